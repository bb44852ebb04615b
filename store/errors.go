package store

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by the store. Test for them with errors.Is.
var (
	// ErrNotFound is returned when a model, record or key does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists is returned by Import when the model name is taken and Force is off.
	ErrExists = errors.New("store: model already exists")
	// ErrCorruption is returned when stored data fails a checksum or cannot be decoded.
	ErrCorruption = errors.New("store: corruption")
	// ErrDiskFull is returned when an import would leave less than the reserve free.
	ErrDiskFull = errors.New("store: not enough disk space")
	// ErrLocked is returned by Open when another process holds the store.
	ErrLocked = errors.New("store: in use by another process")
)

// corruptf returns an error that wraps ErrCorruption.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruption, fmt.Sprintf(format, args...))
}

// IsCorruption reports whether err says that stored data is damaged.
func IsCorruption(err error) bool { return errors.Is(err, ErrCorruption) }

// wrapError adds context to an error from this package without repeating its
// "store: " prefix, and keeps it testable with errors.Is.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

// wrapf returns "store: <context>: <err without its store: prefix>".
func wrapf(err error, format string, args ...any) error {
	return &wrapError{
		msg: "store: " + fmt.Sprintf(format, args...) + ": " + strings.TrimPrefix(err.Error(), "store: "),
		err: err,
	}
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
