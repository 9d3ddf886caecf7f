/** The node flags bin/task-cli.js's `#!` line runs it with. */
export declare function cliNodeFlags(): string[];
