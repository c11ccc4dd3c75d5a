// A real socket.io-client 4 peer for oa's Socket.IO tests.
//
// Environment:
//   OA_URL         server base URL (http://127.0.0.1:port)
//   OA_AUTH        JSON handshake auth payload, e.g. {"apikey":"...","offset":123}
//   OA_TRANSPORTS  comma list: "polling", "websocket" or "polling,websocket" (upgrade)
//   OA_EXPECT      number of events to collect before exiting (0: exit after connect/refusal)
//   OA_TIMEOUT_MS  give up after this long (default 15000), exit code 3
//
// Prints one JSON object per line: {"type":"connect","transport":...},
// {"type":"upgrade","transport":...}, {"type":"event","name":...,"data":...},
// {"type":"connect_error","message":...}, {"type":"timeout","count":n}.
import { io } from "socket.io-client";

const url = process.env.OA_URL;
const auth = JSON.parse(process.env.OA_AUTH ?? "{}");
const transports = (process.env.OA_TRANSPORTS ?? "websocket").split(",");
const expect = Number(process.env.OA_EXPECT ?? "0");
const timeoutMs = Number(process.env.OA_TIMEOUT_MS ?? "15000");

const out = (object) => process.stdout.write(JSON.stringify(object) + "\n");
const socket = io(url, { auth, transports, reconnection: false, forceNew: true });
let count = 0;
let done = false;

function finish(code) {
  if (done) return;
  done = true;
  socket.disconnect();
  setTimeout(() => process.exit(code), 20);
}

socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (transport) => out({ type: "upgrade", transport: transport.name }));
});
socket.on("connect", () => {
  out({ type: "connect", transport: socket.io.engine.transport.name });
  if (expect === 0) finish(0);
});
socket.on("connect_error", (error) => {
  out({ type: "connect_error", message: error.message });
  finish(0);
});
socket.onAny((name, data) => {
  out({ type: "event", name, data });
  count += 1;
  if (count >= expect) finish(0);
});
setTimeout(() => {
  out({ type: "timeout", count });
  finish(3);
}, timeoutMs);
