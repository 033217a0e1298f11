// ESM entry of the `sqrx` package: the same objects as the CommonJS entry (index.js).
import sqrx from './index.js'

export const {
  Runtime,
  Sandbox,
  Files,
  ExecStream,
  Process,
  SqrxError,
  ERROR_CODES,
  runJs,
  listLayers,
  version,
} = sqrx
export default sqrx
