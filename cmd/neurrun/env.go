package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/neurstore/neurstore/store"
)

// Environment variables, read here and nowhere else.
const envStore = "NEURSTORE" // default store location

// storeDir is the value of the global --store flag.
var storeDir string

func defaultStore() string {
	if s := os.Getenv(envStore); s != "" {
		return s
	}
	return "./neurstore-data"
}

// openStore opens the store named by --store.
func openStore() (*store.Store, error) {
	if storeDir == "" {
		return nil, fmt.Errorf("no store given: use --store DIR or set %s", envStore)
	}
	if strings.HasPrefix(storeDir, "postgres://") || strings.HasPrefix(storeDir, "postgresql://") {
		return nil, fmt.Errorf("--store %s: the PostgreSQL backend is not available in this version; use a folder for the embedded store", redactURL(storeDir))
	}
	return store.Open(storeDir)
}

// redactURL hides the password of a connection URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "postgres://..."
	}
	return u.Redacted()
}
