// @vitest-environment happy-dom
import { create } from "@bufbuild/protobuf";
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TaskFileDirection, TaskFileSchema } from "../../../src/gen/task/v1/task_pb.js";
import { formatBytes } from "../../../src/bytes.js";
import { TaskFiles } from "./TaskFiles";

afterEach(cleanup);

const input = create(TaskFileSchema, { name: "data", direction: TaskFileDirection.INPUT, size: 52_428_800n });
const output = create(TaskFileSchema, { name: "report.csv", direction: TaskFileDirection.OUTPUT, attempt: 2, size: 512n, downloadPath: "/tasks/7/artifacts/report.csv?attempt=2" });

describe("TaskFiles", () => {
  it("lists inputs and outputs with their sizes, and offers a download for outputs only", () => {
    const onDownload = vi.fn();
    render(<TaskFiles files={[input, output]} onDownload={onDownload} downloading="" />);
    const rows = screen.getByTestId("task-files").querySelectorAll("tbody tr");
    expect([...rows].map((r) => [...r.querySelectorAll("td")].slice(0, 4).map((td) => td.textContent))).toEqual([
      ["input", "—", "data", "50.0 MiB"],
      ["output", "2", "report.csv", "512 B"],
    ]);
    expect(screen.queryByRole("button", { name: "Download data" })).toBeNull();
    fireEvent.click(screen.getByRole("button", { name: "Download report.csv" }));
    expect(onDownload).toHaveBeenCalledWith(output);
  });

  it("says when there are none, and disables a download under way", () => {
    const { rerender } = render(<TaskFiles files={[]} onDownload={() => {}} downloading="" />);
    expect(screen.getByText("No files.")).toBeTruthy();
    rerender(<TaskFiles files={[output]} onDownload={() => {}} downloading={`${TaskFileDirection.OUTPUT}:2:report.csv`} />);
    expect((screen.getByRole("button", { name: "Download report.csv" }) as HTMLButtonElement).disabled).toBe(true);
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});
