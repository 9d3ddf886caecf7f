import { Link, Route, Switch, useLocation } from "wouter";
import { ConnectionBanner } from "./components/ConnectionBanner";
import { TokenPrompt } from "./components/TokenPrompt";
import { forgetToken, useAuthState, currentToken } from "./services/auth";
import { roleLabel, usePermissions } from "./services/permissions";
import { TaskService } from "../../src/gen/task/v1/task_pb.js";
import { Overview } from "./routes/overview";
import { TaskList } from "./routes/tasks/index";
import { TaskDetail } from "./routes/tasks/$taskId";
import { NewTask } from "./routes/tasks/new";
import { ScheduleList } from "./routes/schedules";
import { QueueList } from "./routes/queues";
import { AuditLog } from "./routes/audit";
import { AuditService } from "../../src/gen/task/v1/audit_pb.js";

/** Which section a path belongs to, for the navigation's "current page" mark. */
function section(path: string): string {
  if (path === "/tasks/new") return "/tasks/new";
  if (path === "/tasks" || path.startsWith("/tasks/")) return "/tasks";
  return path;
}

function NavLink({ href, children }: { href: string; children: string }) {
  const [location] = useLocation();
  return (
    <Link href={href} aria-current={section(location) === href ? "page" : undefined}>
      {children}
    </Link>
  );
}

/** One component per URL. */
function Pages() {
  return (
    <Switch>
      <Route path="/" component={Overview} />
      <Route path="/tasks" component={TaskList} />
      <Route path="/tasks/new" component={NewTask} />
      <Route path="/tasks/:id">{(params) => <TaskDetail idText={params.id} />}</Route>
      <Route path="/schedules" component={ScheduleList} />
      <Route path="/queues" component={QueueList} />
      <Route path="/audit" component={AuditLog} />
      <Route>
        <h1>Not found</h1>
        <p>
          There is no page here. <Link href="/">Go to the overview</Link>.
        </p>
      </Route>
    </Switch>
  );
}

/** Which token the dashboard acts with, and its role ("ci · operator", or "local · admin" without tokens). */
function Identity() {
  const { who } = usePermissions();
  if (!who) return null;
  const restricted = [...who.queues.map((q) => `queue ${q}`), ...who.types.map((t) => `type ${t}`)];
  return (
    <span className="identity muted" data-testid="identity" title={restricted.length > 0 ? `Restricted to ${restricted.join(", ")}` : undefined}>
      {who.local ? "local" : who.name} · <span data-testid="role">{roleLabel(who.role)}</span>
      {restricted.length > 0 && ` (${restricted.join(", ")})`}
    </span>
  );
}

/** The page frame: header and navigation, the connection banner, the routes, the token prompt. */
export function App() {
  const auth = useAuthState();
  const { can } = usePermissions();
  // While the token prompt is open, the page behind it is out of reach of Tab and screen readers.
  const behindPrompt = auth.kind !== "ok";
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="app-header" inert={behindPrompt}>
        <Link href="/" className="brand">
          Tasks
        </Link>
        <nav aria-label="Main">
          <NavLink href="/">Overview</NavLink>
          <NavLink href="/tasks">Tasks</NavLink>
          {can(TaskService, "CreateTask") && <NavLink href="/tasks/new">New task</NavLink>}
          <NavLink href="/schedules">Schedules</NavLink>
          <NavLink href="/queues">Queues</NavLink>
          {can(AuditService, "ListAuditEvents") && <NavLink href="/audit">Audit</NavLink>}
        </nav>
        {auth.kind === "ok" && <Identity />}
        {currentToken() && auth.kind === "ok" && (
          <button type="button" className="link-button sign-out" onClick={() => (forgetToken(), window.location.reload())}>
            Sign out
          </button>
        )}
      </header>
      <ConnectionBanner />
      <main id="main" tabIndex={-1} inert={behindPrompt}>
        {/* Until the server accepts a token, nothing behind the prompt asks for (or shows) data. */}
        {auth.kind === "ok" && <Pages />}
      </main>
      {auth.kind !== "ok" && <TokenPrompt refused={auth.kind === "refused"} />}
    </>
  );
}
