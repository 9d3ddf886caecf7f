import { describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";
import { scheduleTasks } from "./helpers/schedules.js";
import { useServerProcesses } from "./helpers/server-process.js";
import { waitFor } from "./helpers/wait.js";

// The "done when", for real: a five-field schedule on the wall clock with two servers, over
// two minute ticks (the one test that waits for minutes; the others use seconds-level schedules).

const processes = useServerProcesses();

describe("task-cli schedule create heartbeat --cron '* * * * *' --type noop", () => {
  it("creates one task a minute, on the minute, with two servers running; schedule list shows next and last runs", async () => {
    const [a, b] = await Promise.all([processes.start(), processes.start()]);
    const worker = await processes.start(["serve", "-n", "2"]);
    const created = await runCli(["--address", a!.url, "schedule", "create", "heartbeat", "--cron", "* * * * *", "--type", "noop"]);
    expect(created.code, created.stderr).toBe(0);
    const id = /ID\s+(\d+)/.exec(created.stdout)![1]!;

    await waitFor(async () => (await scheduleTasks(processes.database, id)).filter((t) => t.status === "succeeded").length >= 2, "two minute ticks to run", 150_000);
    const list = await runCli(["--address", b!.url, "schedule", "list"]);
    await runCli(["--address", b!.url, "schedule", "pause", "heartbeat"]);

    const tasks = await scheduleTasks(processes.database, id);
    const ticks = tasks.map((t) => t.scheduled_at.getTime());
    expect(new Set(ticks).size).toBe(ticks.length);
    for (const t of ticks) expect(t % 60_000).toBe(0);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]! - ticks[i - 1]!).toBe(60_000);
    for (const t of tasks) expect(t.created_at.getTime() - t.scheduled_at.getTime()).toBeLessThan(10_000);
    expect(list.stdout).toMatch(/heartbeat\s+\* \* \* \* \*\s+UTC\s+noop\s+\S+:00.000Z \(in \d+s\)\s+\d+s ago #\d+ \w+\s+no/);
  }, 240_000);
});
