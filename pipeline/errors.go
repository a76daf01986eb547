package pipeline

import "errors"

// Errors that decide the CLI's exit code.
var (
	// ErrInvalidInput marks a problem with the user's input (exit code 2).
	ErrInvalidInput = errors.New("invalid input")
	// ErrQualityGate marks a failed parity gate (exit code 3).
	ErrQualityGate = errors.New("quality gate failed")
)

// Invalid marks err as caused by the user's input, keeping its message.
func Invalid(err error) error {
	if err == nil {
		return nil
	}
	return invalid{err}
}

type invalid struct{ err error }

func (e invalid) Error() string        { return e.err.Error() }
func (e invalid) Unwrap() error        { return e.err }
func (e invalid) Is(target error) bool { return target == ErrInvalidInput }

// gateFailed marks a failed parity gate, keeping its message.
type gateFailed struct{ err error }

func (e gateFailed) Error() string        { return e.err.Error() }
func (e gateFailed) Unwrap() error        { return e.err }
func (e gateFailed) Is(target error) bool { return target == ErrQualityGate }
