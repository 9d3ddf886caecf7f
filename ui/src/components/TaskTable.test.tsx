// @vitest-environment happy-dom
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TaskSchema, TaskStatus } from "../../../src/gen/task/v1/task_pb.js";
import { TaskTable } from "./TaskTable";

afterEach(cleanup);

const now = Date.UTC(2026, 0, 1, 12);
const task = (id: bigint, name: string, status: TaskStatus) =>
  create(TaskSchema, { id, name, type: "shell", status, attempts: 1, maxAttempts: 3, createdAt: timestampFromDate(new Date(now - 120_000)), updatedAt: timestampFromDate(new Date(now - 1_000)) });

describe("TaskTable", () => {
  it("shows one row per task, linking to it, with its status, attempts and times", () => {
    render(<TaskTable tasks={[task(7n, "backup", TaskStatus.RUNNING), task(3n, "report", TaskStatus.FAILED)]} now={now} caption="Tasks" />);
    const rows = screen.getAllByRole("row").slice(1);
    expect(rows).toHaveLength(2);
    const first = within(rows[0]!);
    expect(first.getByRole("link", { name: "#7" }).getAttribute("href")).toBe("/tasks/7");
    expect(first.getByText("RUNNING").className).toContain("status-running");
    expect(first.getByText("1/3")).toBeTruthy();
    expect(first.getByText("2 min. ago").getAttribute("datetime")).toBe(new Date(now - 120_000).toISOString());
    expect(first.getByText("just now")).toBeTruthy();
    expect(within(rows[1]!).getByText("FAILED")).toBeTruthy();
  });

  it("labels every cell, for the card layout on phones", () => {
    render(<TaskTable tasks={[task(1n, "a", TaskStatus.QUEUED)]} now={now} caption="Tasks" />);
    const labels = screen.getAllByRole("cell").map((c) => c.getAttribute("data-label"));
    expect(labels).toEqual(["ID", "Name", "Type", "Queue", "Status", "Attempts", "Created", "Updated"]);
  });

  it("with a selection, ticks rows one by one or the whole page, and marks the page box mixed", () => {
    const onChange = vi.fn();
    const tasks = [task(7n, "a", TaskStatus.QUEUED), task(3n, "b", TaskStatus.FAILED)];
    render(<TaskTable tasks={tasks} now={now} caption="Tasks" selection={{ selected: new Set([3n]), onChange }} />);
    const page = screen.getByLabelText("Select every task on this page") as HTMLInputElement;
    expect(page.checked).toBe(false);
    expect(page.indeterminate).toBe(true);
    expect((screen.getByLabelText("Select task #3") as HTMLInputElement).checked).toBe(true);
    fireEvent.click(screen.getByLabelText("Select task #7"));
    expect(onChange).toHaveBeenLastCalledWith([7n], true);
    fireEvent.click(page);
    expect(onChange).toHaveBeenLastCalledWith([7n, 3n], true);
  });
});
