/** The sqrx version. */
export declare function version(): string
/** The names of the layers in the store (default data dir unless `dataDir` is given). */
export declare function listLayers(dataDir?: string | undefined | null): Array<string>
