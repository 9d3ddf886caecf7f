import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { startTestApi, type TestApi } from "./helpers/api.js";
import { expectConnectError, rowCounts, taskRequest } from "./helpers/factory.js";

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => api?.close());

describe.each(["client", "grpc", "grpcWeb"] as const)("field violations over %s", (protocol) => {
  it("arrive as google.rpc.BadRequest details, one per field, as well as in the message", async () => {
    const before = await rowCounts(api.database.db.kysely);
    const err = await expectConnectError(
      api[protocol].createTasks({
        tasks: [taskRequest(), taskRequest({ name: "", priority: 5000 })],
      }),
      Code.InvalidArgument,
    );
    const [details] = err.findDetails(BadRequestSchema);
    expect(details?.fieldViolations.map((v) => v.field).sort()).toEqual(["tasks[1].name", "tasks[1].priority"]);
    for (const v of details!.fieldViolations) {
      expect(v.description.length).toBeGreaterThan(0);
      expect(err.rawMessage).toContain(`${v.field}: ${v.description}`);
    }
    expect(await rowCounts(api.database.db.kysely)).toEqual(before);
  });
});
