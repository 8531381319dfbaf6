// Node `ws` echo server with permessage-deflate on, at its defaults (15-bit windows, memLevel 8,
// level 6 through zlib's default, threshold 1024 bytes). Usage: node echo-ws.js PORT
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2]);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: true, maxPayload: 64 << 20 });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on("listening", () => console.error(`node ws echo listening on ${port}`));
