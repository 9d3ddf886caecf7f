import { describe, expect, it } from "vitest";
import { TaskStatus } from "../../../../src/gen/task/v1/task_pb.js";
import { DEFAULT_PAGE_SIZE, parseIds, parseSearchText, parseTaskListSearch, taskListSearchString } from "./index.schema";

describe("the tasks view in the URL", () => {
  it("reads filters, search and paging, and writes them back the same, defaults left out", () => {
    const s = parseTaskListSearch("?status=running,failed&type=shell&id=7,3&schedule=4&size=100&cursor=djE6MTA");
    expect(s).toEqual({ statuses: [TaskStatus.RUNNING, TaskStatus.FAILED], types: ["shell"], queues: [], ids: [7n, 3n], schedules: [4n], name: "", createdAfter: undefined, createdBefore: undefined, cursor: "djE6MTA", pageSize: 100 });
    expect(taskListSearchString(s)).toBe("status=running,failed&type=shell&id=7,3&schedule=4&size=100&cursor=djE6MTA");
    expect(taskListSearchString(parseTaskListSearch(""))).toBe("");
    expect(taskListSearchString({ ...parseTaskListSearch(""), pageSize: DEFAULT_PAGE_SIZE })).toBe("");
  });

  it("writes equal views as equal URLs, whatever order the filters were picked in", () => {
    const a = taskListSearchString(parseTaskListSearch("status=failed,queued&type=shell,noop"));
    const b = taskListSearchString(parseTaskListSearch("type=noop,shell&status=QUEUED,failed"));
    expect(a).toBe(b);
    expect(a).toBe("status=queued,failed&type=noop,shell");
  });

  it("drops what makes no sense instead of failing", () => {
    expect(parseTaskListSearch("status=bogus,succeeded&size=7&id=abc")).toMatchObject({ statuses: [TaskStatus.SUCCEEDED], pageSize: DEFAULT_PAGE_SIZE, ids: [] });
  });

  it("parses an id search typed by a person", () => {
    expect(parseIds("#12, 15 12")).toEqual([12n, 15n]);
    expect(parseIds("")).toEqual([]);
    expect(parseIds("12 twelve")).toBeUndefined();
    expect(parseIds("0")).toBeUndefined();
  });

  it("keeps queues, sorted, and drops names that cannot be queues", () => {
    const s = parseTaskListSearch("?queue=mail,bulk,Not%20A%20Queue");
    expect(s.queues).toEqual(["mail", "bulk"]);
    expect(taskListSearchString(s)).toBe("queue=bulk,mail");
  });

  it("keeps a name search and a time range, in UTC", () => {
    const s = parseTaskListSearch("?name=nightly%20import&after=2026-12-01T10:00:00Z&before=2026-12-01T12:30:00.500Z");
    expect(s.name).toBe("nightly import");
    expect(s.createdAfter?.toISOString()).toBe("2026-12-01T10:00:00.000Z");
    expect(s.createdBefore?.toISOString()).toBe("2026-12-01T12:30:00.500Z");
    expect(taskListSearchString(s)).toBe("name=nightly+import&after=2026-12-01T10:00:00Z&before=2026-12-01T12:30:00.500Z");
    // Not a time, or an empty range: dropped.
    expect(parseTaskListSearch("?after=yesterday").createdAfter).toBeUndefined();
    expect(parseTaskListSearch("?after=2026-12-01T10:00:00Z&before=2026-12-01T09:00:00Z").createdBefore).toBeUndefined();
  });

  it("reads the search box as ids when it holds only ids, else as the start of a name", () => {
    expect(parseSearchText("#12, 15")).toEqual({ ids: [12n, 15n], name: "" });
    expect(parseSearchText(" nightly-")).toEqual({ ids: [], name: "nightly-" });
    expect(parseSearchText("12 twelve")).toEqual({ ids: [], name: "12 twelve" });
    expect(parseSearchText("  ")).toEqual({ ids: [], name: "" });
  });
});
