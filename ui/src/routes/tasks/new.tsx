import { roleLabel, usePermissions } from "../../services/permissions";
import { useEffect, useMemo, useRef, useState, type FormEvent, type ReactNode } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { skipToken, useQueryClient } from "@tanstack/react-query";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { TaskService, type CreateTaskRequest, type TaskType } from "../../../../src/gen/task/v1/task_pb.js";
import { errorSentence, ParameterInput } from "../../components/ParameterInput";
import { durationMs, formatDuration, parseDuration } from "../../format";
import { fieldsFromSchema, fromParameters, inputForViolation, toParameters, type FieldValues } from "../../forms/parameter-fields";
import { errorText, fieldViolations } from "../../services/field-errors";
import { invalidateTaskLists } from "../../services/task-keys";
import { uploadFile } from "../../services/task-files";
import { formatLabels, parseLabels } from "../../../../src/labels.js";

/** The request fields every type has, by the name the server uses in its errors. */
const COMMON_FIELDS = ["name", "type", "priority", "max_attempts", "timeout", "run_at", "idempotency_key", "key", "labels"] as const;
type CommonField = (typeof COMMON_FIELDS)[number];
type Common = Record<CommonField, string>;
const EMPTY_COMMON: Common = { name: "", type: "", priority: "", max_attempts: "", timeout: "", run_at: "", idempotency_key: "", key: "", labels: "" };

interface Problems {
  common: Partial<Record<CommonField, string>>;
  params: Record<string, string>;
  /** Errors that belong to no input. */
  form: string[];
}
const NO_PROBLEMS: Problems = { common: {}, params: {}, form: [] };

function Field({ name, label, hint, error, children }: { name: CommonField; label: string; hint?: string; error?: string; children: ReactNode }) {
  return (
    <div className={`field${error ? " has-error" : ""}`}>
      <label htmlFor={`field-${name}`}>{label}</label>
      {children}
      {error && (
        <p id={`field-${name}-error`} className="field-error" data-field-error={name}>
          {errorSentence(label.replace(/ \(required\)$/, ""), error)}
        </p>
      )}
      {hint && (
        <p id={`field-${name}-hint`} className="hint">
          {hint}
        </p>
      )}
    </div>
  );
}

/** The attributes that tie a common input to its hint and error. */
function described(name: CommonField, problems: Problems, hasHint = false) {
  const error = problems.common[name];
  return {
    id: `field-${name}`,
    name,
    "aria-invalid": error ? true : undefined,
    "aria-describedby": [hasHint ? `field-${name}-hint` : "", error ? `field-${name}-error` : ""].filter(Boolean).join(" ") || undefined,
  };
}

/**
 * Create a task: the parameter inputs are generated from the chosen type's JSON Schema
 * (ListTaskTypes); the server validates, and its field errors are shown next to the inputs.
 * ?type=NAME preselects a type; ?clone=ID starts from an existing task.
 */
export function NewTask() {
  const params = new URLSearchParams(useSearch());
  const cloneId = /^[1-9]\d{0,18}$/.test(params.get("clone") ?? "") ? BigInt(params.get("clone")!) : undefined;
  const types = useQuery(TaskService.method.listTaskTypes, {});
  const source = useQuery(TaskService.method.getTask, cloneId ? { id: cloneId } : skipToken);

  if (types.isError) {
    return (
      <p className="error-box" role="alert">
        Could not load task types: {errorText(types.error)}
      </p>
    );
  }
  if (!types.data || (cloneId && source.isPending)) return <p className="muted">Loading…</p>;
  const original = source.data?.task;
  const initialType = original?.type ?? params.get("type") ?? types.data.types.find((t) => t.enabled)?.name ?? "";
  return (
    <CreateForm
      key={`${cloneId ?? ""}:${initialType}`}
      types={types.data.types}
      initial={{
        common: {
          ...EMPTY_COMMON,
          type: initialType,
          name: original ? `${original.name} (copy)` : "",
          priority: original && original.priority !== 0 ? String(original.priority) : "",
          max_attempts: original ? String(original.maxAttempts) : "",
          timeout: original?.timeout ? formatDuration(durationMs(original.timeout)) : "",
          key: original?.key ?? "",
          labels: original ? formatLabels(original.labels) : "",
        },
        parameters: original?.parameters,
        cloneOf: original ? original.id : undefined,
      }}
    />
  );
}

function CreateForm({ types, initial }: { types: TaskType[]; initial: { common: Common; parameters?: CreateTaskRequest["parameters"]; cloneOf?: bigint } }) {
  const { who } = usePermissions();
  const [, navigate] = useLocation();
  const queryClient = useQueryClient();
  const [common, setCommon] = useState<Common>(initial.common);
  const type = types.find((t) => t.name === common.type);
  const fields = useMemo(() => fieldsFromSchema(type?.parameterSchema), [type]);
  // Inputs per type, so switching type and back keeps what was typed.
  const [valuesByType, setValuesByType] = useState<Record<string, FieldValues>>(() => (initial.parameters ? { [initial.common.type]: fromParameters(fieldsFromSchema(types.find((t) => t.name === initial.common.type)?.parameterSchema), initial.parameters) } : {}));
  const values = valuesByType[common.type] ?? {};
  const [problems, setProblems] = useState<Problems>(NO_PROBLEMS);
  // Input files: the name the task sees each by, and the file picked.
  const [files, setFiles] = useState<{ name: string; file: File | undefined }[]>([]);
  const [uploading, setUploading] = useState(false);
  const summary = useRef<HTMLDivElement>(null);

  const create = useMutation(TaskService.method.createTask, {
    onSuccess: async (res) => {
      await invalidateTaskLists(queryClient);
      if (res.task) navigate(`/tasks/${res.task.id}`);
    },
    onError: (err) => show(serverProblems(err)),
  });

  function show(p: Problems) {
    setProblems(p);
  }
  useEffect(() => {
    if (problems !== NO_PROBLEMS) summary.current?.focus();
  }, [problems]);

  function serverProblems(err: unknown): Problems {
    const p: Problems = { common: {}, params: {}, form: [] };
    const violations = fieldViolations(err);
    if (violations.length === 0) p.form.push(errorText(err));
    for (const v of violations) {
      const input = inputForViolation(v.field);
      if ((COMMON_FIELDS as readonly string[]).includes(input)) p.common[input as CommonField] ??= v.reason;
      else if (fields.some((f) => f.name === input)) p.params[input] ??= v.reason;
      else p.form.push(`${v.field}: ${v.reason}`);
    }
    return p;
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    const p: Problems = { common: {}, params: {}, form: [] };
    const { parameters, errors } = toParameters(fields, values);
    Object.assign(p.params, errors);
    const int = (field: CommonField) => {
      const text = common[field].trim();
      if (text === "") return 0;
      if (!/^-?\d+$/.test(text)) p.common[field] = "must be a whole number";
      return Number(text);
    };
    const priority = int("priority");
    const maxAttempts = int("max_attempts");
    const timeoutMs = parseDuration(common.timeout);
    if (common.timeout.trim() !== "" && timeoutMs === undefined) p.common.timeout = "write a duration such as 30s, 5m or 1h";
    const runAt = common.run_at ? new Date(common.run_at) : undefined;
    if (runAt && Number.isNaN(runAt.getTime())) p.common.run_at = "is not a valid time";
    // The rules of src/labels.ts, as the server applies them: a problem is shown before anything is sent.
    let labels: Record<string, string> = {};
    try {
      labels = parseLabels(common.labels);
    } catch (err) {
      p.common.labels = (err as Error).message;
    }
    files.forEach((f, i) => {
      if (!f.file) p.form.push(`file ${i + 1}: choose a file`);
      else if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(f.name)) p.form.push(`file ${i + 1}: the name must be 1-128 letters, digits, '_', '.', '-', not starting with '.' or '-'`);
    });
    if (Object.keys(p.common).length + Object.keys(p.params).length + p.form.length > 0) {
      show(p);
      return;
    }
    setProblems(NO_PROBLEMS);
    // Each file is uploaded first (streamed from disk by the browser); the create names the uploads.
    const uploads: { name: string; upload: string }[] = [];
    setUploading(true);
    try {
      for (const f of files) uploads.push({ name: f.name, upload: await uploadFile(f.name, f.file!) });
    } catch (err) {
      show({ ...NO_PROBLEMS, form: [errorText(err)] });
      return;
    } finally {
      setUploading(false);
    }
    create.mutate({
      files: uploads,
      name: common.name,
      type: common.type,
      parameters,
      priority,
      maxAttempts,
      timeout: timeoutMs === undefined ? undefined : { seconds: BigInt(Math.floor(timeoutMs / 1000)), nanos: Math.round((timeoutMs % 1000) * 1e6) },
      runAt: runAt ? timestampFromDate(runAt) : undefined,
      idempotencyKey: common.idempotency_key,
      key: common.key.trim(),
      labels,
    });
  }

  const set = (field: CommonField) => (e: { target: { value: string } }) => setCommon({ ...common, [field]: e.target.value });
  const count = Object.keys(problems.common).length + Object.keys(problems.params).length + problems.form.length;

  return (
    <>
      <h1>{initial.cloneOf ? `Clone task #${initial.cloneOf}` : "New task"}</h1>
      <form className="create-form" onSubmit={submit} noValidate aria-describedby={count ? "form-problems" : undefined}>
        <div ref={summary} tabIndex={-1} id="form-problems" className={count ? "error-box" : "visually-hidden"} role={count ? "alert" : undefined} data-testid="form-problems">
          {count > 0 && (
            <>
              <p>{count === 1 ? "1 problem" : `${count} problems`} to fix before the task can be created:</p>
              <ul>
                {Object.entries(problems.common).map(([f, r]) => (
                  <li key={`c-${f}`}>
                    <a href={`#field-${f}`}>{f}</a>: {r}
                  </li>
                ))}
                {Object.entries(problems.params).map(([f, r]) => (
                  <li key={`p-${f}`}>
                    <a href={`#param-${f}`}>parameters.{f}</a>: {r}
                  </li>
                ))}
                {problems.form.map((r) => (
                  <li key={`f-${r}`}>{r}</li>
                ))}
              </ul>
            </>
          )}
        </div>

        <Field name="type" label="Type" error={problems.common.type} hint={type?.description}>
          <select {...described("type", problems, Boolean(type?.description))} value={common.type} onChange={(e) => (setCommon({ ...common, type: e.target.value }), setProblems(NO_PROBLEMS))}>
            {!type && <option value={common.type}>{common.type || "Choose a type"}</option>}
            {types.map((t) => {
              // Shell needs the server's shell role (TASK_SHELL_ROLE), not just a token that may create tasks.
              const roleOk = t.name !== "shell" || who?.shellAllowed !== false;
              return (
                <option key={t.name} value={t.name} disabled={!t.enabled || !roleOk}>
                  {t.name}
                  {!t.enabled ? " (disabled on this server)" : roleOk ? "" : ` (needs role ${roleLabel(who!.shellRole)})`}
                </option>
              );
            })}
          </select>
        </Field>
        <Field name="name" label="Name (required)" error={problems.common.name} hint="A label for people.">
          <input {...described("name", problems, true)} type="text" autoComplete="off" aria-required value={common.name} onChange={set("name")} />
        </Field>

        <fieldset className="parameters">
          <legend>Parameters{type ? ` for ${type.name}` : ""}</legend>
          {fields.length === 0 && <p className="muted">This type takes no parameters.</p>}
          {fields.map((f) => (
            <ParameterInput key={f.name} field={f} value={values[f.name] ?? ""} error={problems.params[f.name]} onChange={(v) => setValuesByType({ ...valuesByType, [common.type]: { ...values, [f.name]: v } })} />
          ))}
        </fieldset>

        <fieldset className="input-files">
          <legend>Input files</legend>
          <p className="hint">A shell command reads each as $TASK_INPUT_DIR/&lt;name&gt;; a plugin as ctx.input(name).</p>
          {files.map((f, i) => (
            <div className="field file-row" key={i}>
              <label htmlFor={`file-name-${i}`}>Name</label>
              <input id={`file-name-${i}`} type="text" autoComplete="off" value={f.name} onChange={(e) => setFiles(files.map((g, j) => (j === i ? { ...g, name: e.target.value } : g)))} />
              <label htmlFor={`file-${i}`}>File</label>
              <input
                id={`file-${i}`}
                type="file"
                onChange={(e) => {
                  const picked = e.target.files?.[0];
                  setFiles(files.map((g, j) => (j === i ? { name: g.name || (picked?.name.replace(/[^A-Za-z0-9_.-]/g, "_").replace(/^[.-]+/, "") ?? ""), file: picked } : g)));
                }}
              />
              <button type="button" onClick={() => setFiles(files.filter((_, j) => j !== i))}>
                Remove
              </button>
            </div>
          ))}
          <button type="button" onClick={() => setFiles([...files, { name: "", file: undefined }])}>
            Add a file
          </button>
        </fieldset>
        <details className="advanced" open={["priority", "max_attempts", "timeout", "run_at", "idempotency_key", "key", "labels"].some((f) => problems.common[f as CommonField] || initial.common[f as CommonField])}>
          <summary>Scheduling and retries</summary>
          <Field name="priority" label="Priority" error={problems.common.priority} hint="Higher runs first; -1000 to 1000. Default 0.">
            <input {...described("priority", problems, true)} type="text" inputMode="numeric" value={common.priority} onChange={set("priority")} placeholder="0" />
          </Field>
          <Field name="max_attempts" label="Max attempts" error={problems.common.max_attempts} hint={type ? `Default for ${type.name}: ${type.defaultMaxAttempts}.` : undefined}>
            <input {...described("max_attempts", problems, Boolean(type))} type="text" inputMode="numeric" value={common.max_attempts} onChange={set("max_attempts")} placeholder={type ? String(type.defaultMaxAttempts) : ""} />
          </Field>
          <Field name="timeout" label="Timeout per attempt" error={problems.common.timeout} hint={type ? `e.g. 30s, 5m, 1h. Default for ${type.name}: ${formatDuration(durationMs(type.defaultTimeout))}.` : "e.g. 30s, 5m, 1h."}>
            <input {...described("timeout", problems, true)} type="text" value={common.timeout} onChange={set("timeout")} />
          </Field>
          <Field name="run_at" label="Run at" error={problems.common.run_at} hint="Leave empty to run now. Your local time.">
            <input {...described("run_at", problems, true)} type="datetime-local" step={1} value={common.run_at} onChange={set("run_at")} />
          </Field>
          <Field name="idempotency_key" label="Idempotency key" error={problems.common.idempotency_key} hint="Repeating a request with the same key returns the same task.">
            <input {...described("idempotency_key", problems, true)} type="text" autoComplete="off" value={common.idempotency_key} onChange={set("idempotency_key")} />
          </Field>
          <Field name="key" label="Key" error={problems.common.key} hint="What the task competes for in its queue (a tenant, a host): the queue's limit per key and fair turns apply. Empty: the queue's key template, if any.">
            <input {...described("key", problems, true)} type="text" autoComplete="off" value={common.key} onChange={set("key")} />
          </Field>
          <Field name="labels" label="Runs on (labels)" error={problems.common.labels} hint="key=value pairs, comma-separated, e.g. region=eu,gpu=true: only a worker or agent with all of them runs the task. Empty: any worker.">
            <input {...described("labels", problems, true)} type="text" autoComplete="off" value={common.labels} onChange={set("labels")} placeholder="region=eu" />
          </Field>
        </details>

        <div className="actions">
          <button type="submit" className="primary" disabled={uploading || create.isPending || (type !== undefined && !type.enabled)}>
            {uploading ? "Uploading…" : create.isPending ? "Creating…" : "Create task"}
          </button>
          <Link href="/tasks" className="button">
            Cancel
          </Link>
        </div>
      </form>
    </>
  );
}
