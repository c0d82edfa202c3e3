package dashboard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
)

var (
	loginTmpl = template.Must(template.ParseFS(assets, "assets/login.html"))
	pageTmpl  = template.Must(template.ParseFS(assets, "assets/index.html"))
)

// staticFile is an embedded asset with its validator.
type staticFile struct {
	body  []byte
	ctype string
	etag  string
}

var static = loadStatic()

func loadStatic() map[string]staticFile {
	out := map[string]staticFile{}
	files, _ := fs.ReadDir(assets, "assets/static")
	for _, f := range files {
		b, err := fs.ReadFile(assets, "assets/static/"+f.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(f.Name()))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		out[f.Name()] = staticFile{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}

// page serves the document every page shares; its script draws the page
// that the path names. Without a session, it sends the browser to log in.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if res, _ := h.authenticate(r); res != authBearer && res != authSession {
		next := r.URL.Path
		q := "?next=" + url.QueryEscape(next)
		if sessionToken(r) != "" {
			q += "&error=expired"
		}
		http.Redirect(w, r, "/dashboard/login"+q, http.StatusSeeOther)
		return
	}
	name := path.Base(r.URL.Path)
	if name == "dashboard" {
		name = "overview"
	}
	var buf bytes.Buffer
	err := pageTmpl.Execute(&buf, struct {
		Page      string
		RefreshMs string
		Pages     []string
	}{name, strconv.FormatInt(h.opts.Refresh.Milliseconds(), 10), pages})
	if err != nil {
		h.log.Error("rendering a dashboard page failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

func (h *Handler) static(w http.ResponseWriter, r *http.Request) {
	f, ok := static[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.body)
}
