"""A model server that streams its answers, for the agent's test on the local cluster (test_agent_serving.py):
run in a `python:3.11` pod from a ConfigMap, standard library only, on 127.0.0.1 of the pod (the agent beside it
forwards there).

POST /v1/completions with `"stream": true` answers in Server-Sent Events, chunked, OpenAI style: the first event,
then nothing more until somebody posts /release (through the same Service), then the rest and `data: [DONE]`.
A relay that buffered the answer would hold the first event back until the end, so a client that must see the
first event before it releases the rest proves the stream passed through unbuffered. GET / answers 200 (ready).
"""

import http.server
import json
import os
import threading

WORDS = ["Drift ", "is ", "a ", "change ", "in ", "the ", "data."]
released = threading.Event()


def events(model: str) -> list[bytes]:
    """The stream, byte for byte: one event per word, the last with its finish reason and token counts."""
    out = []
    for i, word in enumerate(WORDS):
        last = i == len(WORDS) - 1
        event = {"id": "cmpl-1", "object": "text_completion", "model": model,
                 "choices": [{"index": 0, "text": word, "finish_reason": "stop" if last else None}]}
        if last:
            event["usage"] = {"prompt_tokens": 3, "completion_tokens": len(WORDS), "total_tokens": 3 + len(WORDS)}
        out.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    return [*out, b"data: [DONE]\n\n"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.reply(b"{}")

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/release":
            released.set()
            return self.reply(b"{}")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stream = events(request.get("model", ""))
        for i, data in enumerate(stream):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if i == 0:
                released.wait(60)
                released.clear()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler)
    server.serve_forever()
