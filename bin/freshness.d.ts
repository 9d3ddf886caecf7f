/** The compiled CLI entry point. */
export declare const builtEntry: URL;
/** True when dist/ exists and is newer than src/ (or there is no src/, as in the image). */
export declare function compiledBuildIsFresh(): boolean;
