package main

import (
	"fmt"
	"os"

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
	return store.Open(storeDir)
}
