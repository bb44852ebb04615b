package serve

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/store"
)

// Model management under /api/.

// modelSummary is one model in GET /api/models.
type modelSummary struct {
	Ref          string    `json:"ref"`
	Name         string    `json:"name"`
	Tag          string    `json:"tag"`
	Format       string    `json:"format"`
	Mode         string    `json:"mode"`
	Tau          float64   `json:"tau"`
	Tensors      int       `json:"tensors"`
	LogicalBytes int64     `json:"logical_bytes"`
	Created      time.Time `json:"created"`
	Loaded       bool      `json:"loaded"`
}

// modelDetail is GET /api/models/{name}: the manifest without its tensor data.
type modelDetail struct {
	modelSummary
	Lineage    store.Lineage      `json:"lineage"`
	GraphBytes int64              `json:"graph_bytes"`
	Metadata   map[string]string  `json:"metadata,omitempty"`
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	TensorList []tensorSummary    `json:"tensor_list"`
}

type tensorSummary struct {
	Name   string      `json:"name"`
	DType  graph.DType `json:"dtype"`
	Shape  []int64     `json:"shape"`
	Shard  string      `json:"shard,omitempty"`
	Inline bool        `json:"inline,omitempty"`
}

func (s *Server) summary(m *store.Manifest) modelSummary {
	return modelSummary{
		Ref: m.Ref(), Name: m.Name, Tag: m.Tag, Format: m.Format, Mode: m.Params.Mode, Tau: m.Params.Tau,
		Tensors: len(m.Tensors), LogicalBytes: m.LogicalBytes(), Created: m.Created, Loaded: s.mgr.isLoaded(m.Ref()),
	}
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	all, err := s.be.Models()
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]modelSummary, 0, len(all))
	for _, m := range all {
		out = append(out, s.summary(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": out})
}

func (s *Server) showModel(w http.ResponseWriter, r *http.Request) {
	ref, err := canonical(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	m, err := s.mgr.manifest(ref)
	if err != nil {
		writeError(w, err)
		return
	}
	d := modelDetail{modelSummary: s.summary(m), Lineage: m.Lineage, GraphBytes: m.GraphBytes,
		Metadata: m.Metadata, Metrics: m.Metrics, TensorList: make([]tensorSummary, 0, len(m.Tensors))}
	for _, t := range m.Tensors {
		d.TensorList = append(d.TensorList, tensorSummary{Name: t.Name, DType: t.DType, Shape: t.Shape, Shard: t.Shard, Inline: t.Inline()})
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) deleteModel(w http.ResponseWriter, r *http.Request) {
	ref, err := canonical(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	// requests in flight finish within their own timeout: wait that long at most
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout+time.Second)
	defer cancel()
	if err := s.mgr.remove(ctx, ref); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("deleted model", "model", ref)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": ref})
}

// importRequest is the JSON body of POST /api/models that imports a file already
// on the server.
type importRequest struct {
	Path  string  `json:"path"`
	Name  string  `json:"name"`
	Tau   float64 `json:"tau"`
	Base  string  `json:"base"`
	Force bool    `json:"force"`
}

// importModel imports a model: from a server-side path (JSON body), or from the
// file in the body (application/octet-stream, or the first file of a
// multipart/form-data body) with the options in the query: name (required), tau,
// base, force, format (onnx or safetensors; guessed from the bytes without it).
func (s *Server) importModel(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		req  importRequest
		path string
		err  error
	)
	switch ct {
	case "application/json":
		if err = decodeJSON(r, &req, true); err == nil {
			path, err = checkServerPath(req.Path)
		}
		if err == nil && req.Name == "" {
			req.Name = nameFromPath(path)
		}
	case "application/octet-stream", "multipart/form-data":
		if req, err = importQuery(r); err != nil {
			break
		}
		var dir string
		dir, path, err = s.receiveUpload(r, ct == "multipart/form-data")
		if dir != "" {
			defer os.RemoveAll(dir)
		}
	default:
		err = errorf(http.StatusUnsupportedMediaType, "Content-Type %q: send application/json {\"path\": ...}, application/octet-stream or multipart/form-data", ct)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	ref, err := canonical(req.Name)
	if err == nil && req.Base != "" {
		_, err = canonical(req.Base)
	}
	if err == nil {
		if cerr := store.CheckTau(req.Tau); cerr != nil {
			err = &statusError{code: http.StatusBadRequest, err: cerr}
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	start := time.Now()
	res, err := s.be.Import(r.Context(), path, store.ImportOptions{Ref: ref, Tau: req.Tau, Base: req.Base, Force: req.Force})
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			err = &statusError{code: http.StatusBadRequest, err: err} // the base model
		}
		writeError(w, err)
		return
	}
	// a replaced model must not keep serving its old weights
	s.mgr.unload(r.Context(), ref)
	s.log.Info("imported model", "model", ref, "seconds", time.Since(start).Seconds())
	writeJSON(w, http.StatusCreated, map[string]any{
		"model":          s.summary(res.Manifest),
		"new_tensors":    res.NewTensors,
		"dedup_tensors":  res.DedupTensors,
		"delta_tensors":  res.DeltaTensors,
		"inline_tensors": res.InlineTensors,
		"new_bytes":      res.NewBytes,
		"stored_bytes":   res.StoredBytes,
	})
}

// checkServerPath accepts an absolute path to an existing regular file or folder.
func checkServerPath(p string) (string, error) {
	if p == "" {
		return "", errorf(http.StatusBadRequest, "no path given")
	}
	if !filepath.IsAbs(p) {
		return "", errorf(http.StatusBadRequest, "path %q is not absolute", p)
	}
	p = filepath.Clean(p)
	fi, err := os.Stat(p)
	if err != nil {
		return "", errorf(http.StatusBadRequest, "path %q: no such file or folder", p)
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return "", errorf(http.StatusBadRequest, "path %q is not a regular file or a folder", p)
	}
	return p, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// nameFromPath derives a model name from a file or folder name, as "neurrun
// import" does.
func nameFromPath(p string) string {
	base := filepath.Base(p)
	if base == graph.SafetensorsIndexName {
		base = filepath.Base(filepath.Dir(p))
	}
	for _, ext := range []string{".safetensors", ".onnx"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Trim(unsafeName.ReplaceAllString(base, "-"), "-._")
	if base == "" {
		base = "model"
	}
	return base[:min(len(base), 128)]
}

// importQuery reads the import options of an upload from the query.
func importQuery(r *http.Request) (importRequest, error) {
	q := r.URL.Query()
	req := importRequest{Name: q.Get("name"), Base: q.Get("base")}
	if req.Name == "" {
		return req, errorf(http.StatusBadRequest, "an upload needs ?name=NAME[:TAG]")
	}
	var err error
	if v := q.Get("tau"); v != "" {
		if req.Tau, err = strconv.ParseFloat(v, 64); err != nil {
			return req, errorf(http.StatusBadRequest, "tau %q is not a number", v)
		}
	}
	if v := q.Get("force"); v != "" {
		if req.Force, err = strconv.ParseBool(v); err != nil {
			return req, errorf(http.StatusBadRequest, "force %q is not a boolean", v)
		}
	}
	if f := q.Get("format"); f != "" && f != graph.FormatONNX && f != graph.FormatSafetensors {
		return req, errorf(http.StatusBadRequest, "format %q: want onnx or safetensors", f)
	}
	return req, nil
}

// receiveUpload writes the uploaded model to a new temporary folder, under a
// name whose extension says its format. The caller removes dir.
func (s *Server) receiveUpload(r *http.Request, multipart bool) (dir, path string, err error) {
	body := io.Reader(r.Body)
	if multipart {
		mr, err := r.MultipartReader()
		if err != nil {
			return "", "", errorf(http.StatusBadRequest, "bad multipart body: %v", err)
		}
		for {
			part, err := mr.NextPart()
			if err != nil {
				return "", "", uploadErr(err, "no file in the multipart body")
			}
			if part.FileName() != "" || part.FormName() == "file" {
				body = part
				break
			}
		}
	}
	dir, err = os.MkdirTemp("", "neurstore-upload-")
	if err != nil {
		return "", "", err
	}
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return dir, "", err
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return dir, "", uploadErr(err, "")
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = sniffFormat(f.Name())
	}
	path = f.Name() + "." + format
	if err := os.Rename(f.Name(), path); err != nil {
		return dir, "", err
	}
	return dir, path, nil
}

func uploadErr(err error, eofMsg string) error {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "upload is over the body limit of %d bytes", tooBig.Limit)
	case err == io.EOF && eofMsg != "":
		return errorf(http.StatusBadRequest, "%s", eofMsg)
	}
	return errorf(http.StatusBadRequest, "reading the upload: %v", err)
}

// sniffFormat guesses an upload's format: a safetensors file starts with an
// 8-byte header length and then '{'.
func sniffFormat(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return graph.FormatONNX
	}
	defer f.Close()
	var head [9]byte
	if n, _ := io.ReadFull(f, head[:]); n == 9 && head[8] == '{' {
		return graph.FormatSafetensors
	}
	return graph.FormatONNX
}
