package bundle

import (
	"debug/elf"
	"fmt"
)

// IsStatic reports whether the ELF file at path is statically linked (has no
// program interpreter). Target hosts include CentOS 7 with glibc 2.17: a binary
// linked against this machine's newer glibc would not start there, so the bundle
// carries static binaries only.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
