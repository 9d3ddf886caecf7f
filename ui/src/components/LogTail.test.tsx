// @vitest-environment happy-dom
import { create } from "@bufbuild/protobuf";
import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TaskLogLineSchema } from "../../../src/gen/task/v1/task_pb.js";
import { LogTail } from "./LogTail";

afterEach(cleanup);

const line = (seq: number, text: string, stream = "stdout") => create(TaskLogLineSchema, { seq, attempt: 1, stream, line: text });

describe("LogTail", () => {
  it("shows the lines, stderr and system lines apart, and how many there are", () => {
    render(<LogTail lines={[line(9, "nine"), line(10, "oops", "stderr")]} lastSeq={10} live onDownload={() => {}} downloading={false} />);
    expect(screen.getByText("10 lines (showing the last 2) · live")).toBeTruthy();
    expect(screen.getByText("oops").className).toContain("log-stderr");
    expect(screen.getByTestId("log-lines").textContent).toBe("nine\noops\n");
  });

  it("offers the download once there is output, and not twice at once", () => {
    const onDownload = vi.fn();
    const { rerender } = render(<LogTail lines={[]} lastSeq={0} live={false} onDownload={onDownload} downloading={false} />);
    expect(screen.getByText("No output yet")).toBeTruthy();
    expect((screen.getByRole("button", { name: "Download" }) as HTMLButtonElement).disabled).toBe(true);
    rerender(<LogTail lines={[line(1, "one")]} lastSeq={1} live={false} onDownload={onDownload} downloading={false} />);
    fireEvent.click(screen.getByRole("button", { name: "Download" }));
    expect(onDownload).toHaveBeenCalledTimes(1);
    rerender(<LogTail lines={[line(1, "one")]} lastSeq={1} live={false} onDownload={onDownload} downloading />);
    expect((screen.getByRole("button", { name: "Downloading…" }) as HTMLButtonElement).disabled).toBe(true);
  });
});
