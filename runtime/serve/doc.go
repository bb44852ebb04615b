// Package serve is NeurStore's HTTP inference server: it serves the models of a
// store over the KServe v2 / Open Inference Protocol REST API (/v2/...), manages
// them under /api/ (list, show, import, delete) and reports Prometheus metrics at
// /metrics. "neurrun serve" is its command.
//
// Models load on first use (or at start with Config.Preload), each warmed up with
// one run on zeros, and stay loaded within a memory budget over their weight bytes;
// the least recently used idle model is unloaded to make room, never one with
// requests in flight. Requests for one model that arrive within Config.MaxDelay of
// each other are run together, concatenated along the batch (first) dimension when
// every input of the model has a symbolic first dimension, by a fixed pool of
// workers that each own a runtime.Session.
//
// What the server must never do:
//   - use a model name as a file path: names are checked with store.ParseRef and
//     only ever used as store keys;
//   - read a server-side file the client names unless the path is absolute and is
//     an existing regular file or directory (and the request passed the token);
//   - accept unbounded work: bodies are limited (413), each model's queue is
//     bounded (429), each request has a deadline (504) that cancels its run;
//   - answer a request other than with JSON (errors are {"error": "..."}, except
//     the Prometheus text of /metrics);
//   - drop an accepted request on shutdown: it stops accepting, then drains the
//     requests in flight and in the queues before it returns;
//   - listen beyond loopback unless told to (the command's default address is
//     127.0.0.1:8080), or serve anything but /v2/health/* without the bearer
//     token when one is set.
package serve
