import { describe, expect, it } from "vitest";
import { auditSearchString, parseAuditSearch } from "./audit.schema";

describe("the Audit view's URL", () => {
  it("round-trips a view and leaves defaults out", () => {
    const view = { actor: "schedule:nightly", action: "cancel", since: "24h" as const, cursor: "abc" };
    expect(auditSearchString(view)).toBe("actor=schedule:nightly&action=cancel&since=24h&cursor=abc");
    expect(parseAuditSearch(auditSearchString(view))).toEqual(view);
    expect(auditSearchString(parseAuditSearch(""))).toBe("");
  });

  it("drops an unknown action or window instead of failing", () => {
    expect(parseAuditSearch("action=drop_table&since=1y&actor=ci")).toEqual({ actor: "ci", action: "", since: "", cursor: "" });
  });
});
