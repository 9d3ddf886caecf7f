import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { Command, Option } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram } from "../src/cli/program.js";
import { configEnvNames } from "../src/config.js";

const root = path.resolve(".");
const read = (file: string) => readFileSync(path.join(root, file), "utf8");

/** Every .md under docs/design. */
const designDocs = readdirSync(path.join(root, "docs/design"))
  .filter((f) => f.endsWith(".md"))
  .map((f) => `docs/design/${f}`);
/** The documents a reader of the repository follows. */
const documents = ["README.md", "docs/ARCHITECTURE.md", ...designDocs];

/** Where what the documents name must exist: the code, its tests and scripts, the API, the schema, the dashboard. */
const codeRoots = ["src", "scripts", "test", "proto", "migrations", "ui/src", "bin", "charts", "examples"];
const codeExtensions = /\.(ts|tsx|js|mjs|cjs|proto|sql|sh|yaml|yml|tpl|json)$/;

function filesUnder(dir: string): string[] {
  const full = path.join(root, dir);
  if (!existsSync(full)) return [];
  return readdirSync(full, { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.name === "node_modules" || e.name === "dist") return [];
    if (e.isDirectory()) return filesUnder(rel);
    return e.isFile() && codeExtensions.test(e.name) && statSync(path.join(root, rel)).size < 2_000_000 ? [rel] : [];
  });
}

const identifiersOf = (roots: string[]) => {
  const ids = new Set<string>();
  // Not this file: the names it makes up to show a check fails would otherwise "exist".
  for (const file of roots.flatMap(filesUnder).filter((f) => f !== "test/docs.test.ts")) for (const m of read(file).matchAll(/[A-Za-z_$][\w$]*/g)) ids.add(m[0]);
  return ids;
};
/** Every identifier written anywhere in the code, tests, scripts, protos and migrations. */
const codeIdentifiers = identifiersOf(codeRoots);
/** Those of the product alone: what the architecture may name (not a test helper, not a script). */
const productIdentifiers = identifiersOf(["src", "proto", "migrations", "ui/src"]);

/** The text outside fenced code blocks. */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, "");
/** The inline `code` spans of a document, outside fenced blocks. */
const spans = (text: string) => [...prose(text).matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!);

const looksLikeSymbol = (segment: string) =>
  /\(.*\)$/.test(segment) || /[a-z][A-Z]/.test(segment) || /^[A-Z][a-z0-9]+[A-Z]/.test(segment) || /^[a-z][a-z0-9]*(_[a-z0-9]+)+$/.test(segment);

/**
 * The code symbols a document names in backticks (`claimAttempt`, `startWorkers()`, `LogSink.write`,
 * `task_history`) that appear nowhere in the code. Words, paths, flags, env vars and SQL are not symbols.
 */
export function unknownSymbols(text: string, known: Set<string> = codeIdentifiers): string[] {
  const unknown: string[] = [];
  for (const span of spans(text)) {
    const m = /^([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)(\(.*\))?$/.exec(span);
    if (!m) continue;
    const segments = m[1]!.split(".");
    segments.forEach((segment, i) => {
      const isCall = m[2] !== undefined && i === segments.length - 1;
      // PostgreSQL's own functions and views (`pg_advisory_lock`, `pg_stat_database`) are not ours to define.
      if (/^pg_/.test(segment)) return;
      if ((isCall || looksLikeSymbol(segment)) && !known.has(segment)) unknown.push(span);
    });
  }
  return [...new Set(unknown)];
}

/** The RPC names of proto/, and the messages (a name like `CreateTaskRequest` is a message, not an RPC). */
function protoNames(): { rpcs: Set<string>; messages: Set<string>; services: Set<string> } {
  const rpcs = new Set<string>();
  const messages = new Set<string>();
  const services = new Set<string>();
  for (const file of filesUnder("proto")) {
    const text = read(file);
    for (const m of text.matchAll(/\brpc\s+(\w+)/g)) rpcs.add(m[1]!);
    for (const m of text.matchAll(/\b(?:message|enum)\s+(\w+)/g)) messages.add(m[1]!);
    for (const m of text.matchAll(/\bservice\s+(\w+)/g)) services.add(m[1]!);
  }
  return { rpcs, messages, services };
}

const rpcLike = /\b((?:Create|Get|List|Update|Delete|Pause|Resume|Cancel|Retry|Watch|Trigger|Bulk)[A-Z][A-Za-z]*)\b/g;

/** RPC-shaped names (`WatchTasks`, `TriggerSchedule`) and `*Service` names in the prose that proto/ does not define. */
export function unknownRpcs(text: string): string[] {
  const { rpcs, messages, services } = protoNames();
  const unknown = new Set<string>();
  const body = prose(text);
  for (const m of body.matchAll(rpcLike)) if (!rpcs.has(m[1]!) && !messages.has(m[1]!)) unknown.add(m[1]!);
  for (const m of body.matchAll(/\b(\w+Service)\b/g)) if (/^[A-Z]/.test(m[1]!) && !services.has(m[1]!) && !codeIdentifiers.has(m[1]!)) unknown.add(m[1]!);
  return [...unknown];
}

/**
 * The environment variables the product reads: src/config.ts's (named in its doc comments), those the CLI's
 * options take (commander `.env()`), and those the shell plugin sets for a command.
 */
function knownEnv(program: Command): Set<string> {
  const names = new Set<string>(["DATABASE_URL"]);
  for (const m of read("src/config.ts").matchAll(/\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b/g)) names.add(m[1]!);
  const walk = (cmd: Command) => {
    for (const o of cmd.options as readonly Option[]) if (o.envVar) names.add(o.envVar);
    cmd.commands.forEach(walk);
  };
  walk(program);
  for (const m of read("src/plugins/shell.ts").matchAll(/\b(TASK_[A-Z0-9_]+):/g)) names.add(m[1]!);
  // The dashboard's development server (its API proxy) and the Helm chart's own variables.
  for (const m of read("ui/vite.config.ts").matchAll(/process\.env\.(\w+)/g)) names.add(m[1]!);
  for (const file of filesUnder("charts")) for (const m of read(file).matchAll(/- name: (TASK_\w+)/g)) names.add(m[1]!);
  return names;
}

/** `TASK_*` variables a document names that nothing reads (enum values `TASK_STATUS_*` are the API's). */
export function unknownEnv(text: string, known: Set<string>): string[] {
  const unknown = new Set<string>();
  for (const m of text.matchAll(/\b(TASK_[A-Z0-9_]*[A-Z0-9])\b/g)) {
    const name = m[1]!;
    if (name.startsWith("TASK_STATUS_") ? codeIdentifiers.has(name) : known.has(name)) continue;
    unknown.add(name);
  }
  return [...unknown];
}

function silentProgram(): Command {
  const sink = { write: () => true };
  return buildProgram({ stdout: sink, stderr: sink, isTTY: false });
}

/** Splits a command line into words (double and single quotes), stopping at the shell's own syntax. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"[^"]*"|'[^']*'|[^\s]+/g)) {
    const w = m[0];
    if (/^(\||&&|;|>|>>|<|#|\\|2>&1|&)$/.test(w) || w.startsWith("$(") || w.startsWith("#")) break;
    out.push(w.replace(/[`;,.)]+$/, "") || w);
  }
  return out;
}

const findOption = (cmd: Command, flag: string): Option | undefined => {
  for (let c: Command | null = cmd; c; c = c.parent) {
    const o = (c.options as readonly Option[]).find((x) => x.long === flag || x.short === flag);
    if (o) return o;
  }
  return flag === "--help" || flag === "-h" ? ({ required: false, optional: false } as Option) : undefined;
};

/** What is wrong with one `task-cli ...` line: an unknown command, or a flag the command does not take. */
export function checkCliLine(program: Command, line: string): string[] {
  const problems: string[] = [];
  const argv = words(line);
  let cmd = program;
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i]!;
    if (w.startsWith("-") && w.length > 1) {
      if (!/^--?[A-Za-z]/.test(w)) continue;
      const flag = w.split("=")[0]!;
      const option = findOption(cmd, flag);
      if (!option) problems.push(`task-cli ${argv.join(" ")}: ${cmd.name()} has no ${flag}`);
      else if ((option.required || option.optional) && !w.includes("=") && !(option.optional && argv[i + 1]?.startsWith("-"))) i++;
      continue;
    }
    // `pause|resume|delete` in a line shows several commands at once: each must exist.
    const alternatives = w.split("|").filter(Boolean);
    const subs = alternatives.map((a) => cmd.commands.find((c) => c.name() === a || c.aliases().includes(a)));
    const sub = subs[0];
    if (sub && subs.every(Boolean)) cmd = sub;
    else if (cmd.commands.length > 0 && (cmd.registeredArguments ?? []).length === 0 && !/^[<[.]/.test(w)) {
      problems.push(`task-cli ${argv.join(" ")}: ${cmd.name()} has no command ${w}`);
      break;
    }
  }
  return problems;
}

/** Every flag written in the code, scripts, Dockerfile and CI (`--n` of the bench, `--read-only` of a smoke test). */
const codeFlags = new Set<string>();
for (const file of [...codeRoots.flatMap(filesUnder), "Dockerfile", "package.json", ...filesUnder(".ci")].filter((f) => f !== "test/docs.test.ts" && existsSync(path.join(root, f)))) {
  for (const m of read(file).matchAll(/(--[a-z][\w-]*)/g)) codeFlags.add(m[1]!);
}

/**
 * Every `task-cli` invocation a document shows (lines of sh/console blocks, inline spans), checked against the
 * program; and every flag quoted alone (`--delay`) must be one the CLI or some script takes.
 */
export function unknownCli(text: string, program: Command): string[] {
  const lines: string[] = [];
  for (const block of text.matchAll(/^```(?:sh|bash|shell|console)\n([\s\S]*?)^```/gm)) {
    for (const m of block[1]!.replace(/\\\n\s*/g, " ").matchAll(/^(?:\$ )?(?:[A-Z_]+=\S+ )*task-cli\s+(.*)$/gm)) lines.push(m[1]!);
  }
  for (const span of spans(text)) {
    const m = /^task-cli\s+(.*)$/.exec(span);
    if (m) lines.push(m[1]!);
  }
  // The README's command table ("## task-cli"): each first cell's spans are command lines without the
  // program name; `a \| b` there separates alternatives, and [optional] parts are checked too.
  const table = /^## task-cli\n([\s\S]*?)^## /m.exec(text)?.[1] ?? "";
  for (const row of table.matchAll(/^\| (`.*?`) \| /gm)) {
    for (const span of row[1]!.matchAll(/`([^`]+)`/g)) lines.push(span[1]!.replace(/ \\\| /g, " ").replace(/\\\|/g, "|").replace(/[[\]]/g, " "));
  }
  const problems = lines.flatMap((l) => checkCliLine(program, l));
  const allFlags = new Set<string>(["--help", ...codeFlags]);
  const walk = (cmd: Command) => {
    for (const o of cmd.options as readonly Option[]) if (o.long) allFlags.add(o.long);
    cmd.commands.forEach(walk);
  };
  walk(program);
  for (const span of spans(text)) {
    const flag = /^(--[a-z][\w-]*)(?:[ =].*)?$/.exec(span)?.[1];
    if (flag && !allFlags.has(flag)) problems.push(`${span}: no command or script takes ${flag}`);
  }
  return [...new Set(problems)];
}

/** `npm run X` and `npm start` that package.json does not define. */
export function unknownNpmScripts(text: string): string[] {
  const scripts = (JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts;
  return [...text.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!).filter((s) => !(s in scripts));
}

/** Bold bullet leads (`- **CLI**`) and headings that appear twice. */
export function repeatedSections(text: string): string[] {
  const seen = new Set<string>();
  const repeated: string[] = [];
  for (const m of prose(text).matchAll(/^(?:- \*\*([^*]+)\*\*|(#+ .+)$)/gm)) {
    const key = (m[1] ?? m[2]!).trim();
    if (!m[1] && !m[2]) continue;
    if (seen.has(key)) repeated.push(key);
    seen.add(key);
  }
  return repeated;
}

/** The documents under test: the committed ones, or (DOCS_FROM=<commit>) those of another commit, to show a check bites. */
function document(file: string): string {
  const from = process.env.DOCS_FROM;
  if (!from) return read(file);
  try {
    return execFileSync("git", ["show", `${from}:${file}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return ""; // a document that commit did not have
  }
}

describe("the repository explains itself", () => {
  const program = silentProgram();

  it("keeps the architecture a ten-minute read (at most 20 KiB)", () => {
    expect(Buffer.byteLength(document("docs/ARCHITECTURE.md"))).toBeLessThanOrEqual(20 * 1024);
  });

  it("maps every top-level part of src/ in the architecture", () => {
    const architecture = document("docs/ARCHITECTURE.md");
    const parts = readdirSync(path.join(root, "src"), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(parts.length).toBeGreaterThan(3);
    expect(parts.filter((p) => !new RegExp("`src/" + p + "[/`]").test(architecture))).toEqual([]);
  });

  it("says each thing once (no heading or bold bullet twice)", () => {
    expect(repeatedSections("- **CLI** (`src/cli`): a\n- **API**: b\n- **CLI** (`src/cli`): c\n")).toEqual(["CLI"]);
    expect(documents.flatMap((doc) => repeatedSections(document(doc)).map((s) => `${doc}: ${s}`))).toEqual([]);
  });

  it("names only code symbols that exist (the architecture: only the product's)", () => {
    expect(unknownSymbols("workers claim through `claimAttemptz()`; `LogSink.write`, `task_history`, `pg_notify`")).toEqual(["claimAttemptz()"]);
    expect(unknownSymbols("`claimNextAttempts`, `scriptOnlyHelper`", new Set(["claimNextAttempts"]))).toEqual(["scriptOnlyHelper"]);
    expect(unknownSymbols(document("docs/ARCHITECTURE.md"), productIdentifiers)).toEqual([]);
    expect(documents.flatMap((doc) => unknownSymbols(document(doc)).map((s) => `${doc}: ${s}`))).toEqual([]);
  });

  it("names only RPCs and services that proto/ defines", () => {
    expect(unknownRpcs("`WatchTaskz` streams; `CreateTaskRequest`; task.v1.TaskQueueService")).toEqual(["WatchTaskz", "TaskQueueService"]);
    expect(documents.flatMap((doc) => unknownRpcs(document(doc)).map((s) => `${doc}: ${s}`))).toEqual([]);
  });

  it("names only environment variables the product reads", () => {
    const known = knownEnv(program);
    expect(known.has("TASK_LEASE_MS")).toBe(true);
    expect(unknownEnv("`TASK_LEASE_MS`, TASK_STATUS_FAILED, TASK_API_TOKEN", known)).toEqual(["TASK_API_TOKEN"]);
    expect(documents.flatMap((doc) => unknownEnv(document(doc), known).map((s) => `${doc}: ${s}`))).toEqual([]);
  });

  it("shows only task-cli commands and flags the CLI has", () => {
    expect(checkCliLine(program, "task craete noop")).toEqual(["task-cli task craete noop: task has no command craete"]);
    expect(checkCliLine(program, "task create noop --delay 5s")).toEqual([]);
    expect(checkCliLine(program, "task create noop --no-such-flag")).toHaveLength(1);
    expect(checkCliLine(program, "schedule pause|resumez nightly")).toHaveLength(1);
    expect(unknownCli("Run `task-cli queue set q --limit 2`, then `--frobnicate-widgets`.", program)).toHaveLength(2);
    expect(unknownCli("## task-cli\n\n| `task list [--status S] [--pagez N]` | x |\n\n## next\n", program)).toHaveLength(1);
    expect(documents.flatMap((doc) => unknownCli(document(doc), program).map((s) => `${doc}: ${s}`))).toEqual([]);
  });

  it("says what is, not what is missing 'yet' nor what an earlier round did", () => {
    // "The API has no WatchTasks yet", "tasks have no queue yet": true once, false the day the feature lands.
    // Plans belong in issues; history in git log.
    const stale = (text: string): string[] => [
      ...[...prose(text).matchAll(/\b(?:no|not|n't|never)\b[^.;:|]{0,80}\byet\b/gi)].map((m) => m[0]),
      ...[...prose(text).matchAll(/\b(?:this|last|previous|that) round\b|\bbefore (?:the )?round \w+/gi)].map((m) => m[0]),
      ...[...prose(text).matchAll(/\b[Ss]ession (?:\d+|[A-Z])\b/g)].map((m) => m[0]),
    ];
    expect(stale("The API has no WatchTasks yet. This round's run. Session 12 did it. A session advisory lock.")).toEqual(["no WatchTasks yet", "This round", "Session 12"]);
    expect(documents.flatMap((doc) => stale(document(doc)).map((s) => `${doc}: ${s}`))).toEqual([]);
  });

  it("documents every setting of src/config.ts in the README's configuration table", () => {
    const names = Object.values(configEnvNames);
    expect(names.length).toBeGreaterThan(30);
    const table = /^## Configuration\n([\s\S]*?)^## /m.exec(document("README.md"))?.[1] ?? "";
    expect(names.filter((n) => !table.includes(`\`${n}\``))).toEqual([]);
  });

  it("runs only npm scripts package.json defines", () => {
    expect(unknownNpmScripts("npm run bench, npm run benchmark")).toEqual(["benchmark"]);
    expect(documents.flatMap((doc) => unknownNpmScripts(document(doc)).map((s) => `${doc}: npm run ${s}`))).toEqual([]);
  });

  it("links and names only files that exist in the repository", () => {
    const missing: string[] = [];
    for (const doc of documents) {
      const text = document(doc);
      const links = [...text.matchAll(/\]\(([^)#\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
      // Backticked repository paths such as `src/store/transitions.ts` or `migrations/`.
      const named = [...text.matchAll(/`((?:\.\.\/)*(?:src|test|scripts|migrations|docs|proto|charts|deploy|shared|ui)\/[\w./-]*)`/g)].map((m) => m[1]!);
      for (const ref of [...links, ...named]) {
        const target = path.resolve(path.dirname(path.join(root, doc)), ref);
        const resolved = links.includes(ref) ? target : path.join(root, ref);
        if (!resolved.startsWith(root + path.sep) || !existsSync(resolved)) missing.push(`${doc}: ${ref}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("points migrations at the design in the repository, not outside it", () => {
    for (const file of readdirSync(path.join(root, "migrations"))) {
      expect(read(`migrations/${file}`), file).not.toMatch(/shared DESIGN|\.\.\/shared/);
    }
  });

  it("describes every table the migrations create", () => {
    const architecture = document("docs/ARCHITECTURE.md");
    // The tables the migrations leave: created, less those renamed or dropped later.
    const tables = new Set<string>();
    for (const file of readdirSync(path.join(root, "migrations")).sort()) {
      for (const m of read(`migrations/${file}`).matchAll(/create (?:unlogged )?table (?:if not exists )?(\w+)|alter table (?:if exists )?(\w+) rename to (\w+)|drop table (?:if exists )?(\w+)/gi)) {
        if (m[1]) tables.add(m[1]);
        else if (m[2]) (tables.delete(m[2]), tables.add(m[3]!));
        else tables.delete(m[4]!);
      }
    }
    expect(tables.size).toBeGreaterThan(5);
    for (const table of tables) expect(architecture, table).toContain(`\`${table}\``);
  });
});
