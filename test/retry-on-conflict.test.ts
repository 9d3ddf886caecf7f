import { describe, expect, it } from "vitest";
import { isConflict, retryOnConflict } from "../src/store/db.js";

const pgError = (code: string) => Object.assign(new Error(`error ${code}`), { code });

describe("retryOnConflict", () => {
  it("runs a statement PostgreSQL aborted to break a deadlock again, and passes any other error through", async () => {
    let calls = 0;
    const flaky = () => (++calls < 3 ? Promise.reject(pgError("40P01")) : Promise.resolve("done"));
    await expect(retryOnConflict(flaky)).resolves.toBe("done");
    expect(calls).toBe(3);

    calls = 0;
    await expect(retryOnConflict(() => (++calls, Promise.reject(pgError("23505"))))).rejects.toThrow("error 23505");
    expect(calls).toBe(1);

    calls = 0;
    await expect(retryOnConflict(() => (++calls, Promise.reject(pgError("40001"))), 3)).rejects.toThrow("error 40001");
    expect(calls).toBe(3);
    expect([isConflict(pgError("40P01")), isConflict(pgError("40001")), isConflict(pgError("57P01")), isConflict("40P01")]).toEqual([true, true, false, false]);
  });
});
