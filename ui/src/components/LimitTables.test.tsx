// @vitest-environment happy-dom
import { create } from "@bufbuild/protobuf";
import { cleanup, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { RateLimitSchema } from "../../../src/gen/task/v1/limit_pb.js";
import { QueueKeyUseSchema } from "../../../src/gen/task/v1/queue_pb.js";
import { formatRate, KeyUseTable, RateLimitTable } from "./LimitTables";

afterEach(cleanup);

const cells = (row: HTMLElement) => Object.fromEntries(within(row).getAllByRole("cell").map((c) => [c.dataset.label, c.textContent]));

describe("LimitTables", () => {
  it("formats a rate by its period's name, or its length", () => {
    expect(formatRate({ rate: 60, period: { $typeName: "google.protobuf.Duration", seconds: 60n, nanos: 0 } })).toBe("60/min");
    expect(formatRate({ rate: 1, period: { $typeName: "google.protobuf.Duration", seconds: 3600n, nanos: 0 } })).toBe("1/h");
    expect(formatRate({ rate: 100, period: { $typeName: "google.protobuf.Duration", seconds: 30n, nanos: 0 } })).toBe("100/30s");
  });

  it("lists each rate limit's scope, rate, tokens left and waiting tasks; a spent limit's tokens stand out", () => {
    const spent = create(RateLimitSchema, { name: "smtp", rate: 100, period: { seconds: 60n }, burst: 20, taskType: "send_email", tokens: 0.4, waiting: 1234n });
    const crm = create(RateLimitSchema, { name: "crm", rate: 5, period: { seconds: 1n }, burst: 5, queue: "crm", perKey: true, tokens: 5, waiting: 0n });
    const { container } = render(<RateLimitTable limits={[spent, crm]} />);
    const smtp = container.querySelector<HTMLElement>('tr[data-limit="smtp"]')!;
    expect(cells(smtp)).toEqual({ Limit: "smtp", Scope: "type send_email", Rate: "100/min", Burst: "20", "Per key": "no", "Tokens left": "0.4", Waiting: "1,234" });
    expect(within(smtp).getByTestId("tokens").querySelector(".tag")).not.toBeNull();
    const row = container.querySelector<HTMLElement>('tr[data-limit="crm"]')!;
    expect(cells(row)).toMatchObject({ Scope: "queue crm", Rate: "5/s", "Per key": "yes", "Tokens left": "5.0" });
    expect(within(row).getByTestId("tokens").querySelector(".tag")).toBeNull();
  });

  it("shows each key's running tasks against its limit, its waiting ones and what holds them", () => {
    const keys = [
      create(QueueKeyUseSchema, { key: "acme", running: 2n, waiting: 5n, limit: 2, waitReason: "key acme at its limit 2" }),
      create(QueueKeyUseSchema, { key: "bolt", running: 1n, waiting: 3n }),
      create(QueueKeyUseSchema, { key: "calm", running: 1n, waiting: 0n, limit: 2 }),
    ];
    render(<KeyUseTable queue="emails" keys={keys} />);
    expect(screen.getByRole("table", { name: "Keys of queue emails, busiest first" })).toBeTruthy();
    const [acme, bolt, calm] = screen.getAllByRole("row").slice(1);
    expect(cells(acme!)).toEqual({ Key: "acme", Running: "2 of 2", Waiting: "5", "Waiting for": "key acme at its limit 2" });
    // Waiting with nothing holding it: for a worker's free slot.
    expect(cells(bolt!)).toMatchObject({ Running: "1", "Waiting for": "a free slot" });
    expect(cells(calm!)).toMatchObject({ Running: "1 of 2", Waiting: "0", "Waiting for": "—" });
  });
});
