import { formatBytes } from "../../../src/bytes.js";
import { TaskFileDirection, type TaskFile } from "../../../src/gen/task/v1/task_pb.js";

/**
 * A task's files: inputs, then the outputs each attempt kept, with sizes; an output has a download
 * button (the route saves it through the authenticated download). On a phone each file is a card
 * (data-label names its values), as the task list's rows are.
 */
export function TaskFiles({ files, onDownload, downloading }: { files: TaskFile[]; onDownload: (file: TaskFile) => void; downloading: string }) {
  if (files.length === 0) return <p className="muted">No files.</p>;
  return (
    <table className="task-files" data-testid="task-files">
      <thead>
        <tr>
          <th scope="col">Kind</th>
          <th scope="col">Attempt</th>
          <th scope="col">Name</th>
          <th scope="col">Size</th>
          <th scope="col">
            <span className="visually-hidden">Download</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {files.map((f) => {
          const input = f.direction === TaskFileDirection.INPUT;
          const key = `${f.direction}:${f.attempt}:${f.name}`;
          return (
            <tr key={key}>
              <td data-label="Kind">{input ? "input" : "output"}</td>
              <td data-label="Attempt">{input ? "—" : f.attempt}</td>
              <td data-label="Name">
                <code>{f.name}</code>
              </td>
              <td data-label="Size" className="file-size" title={`${f.size} bytes`}>{formatBytes(Number(f.size))}</td>
              <td data-label="">
                {f.downloadPath && (
                  <button type="button" disabled={downloading === key} onClick={() => onDownload(f)} aria-label={`Download ${f.name}`}>
                    {downloading === key ? "Downloading…" : "Download"}
                  </button>
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
