package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealAndRotate(t *testing.T) {
	dir := t.TempDir()
	k, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("key file: %v %v; want 32 bytes, mode 0600", fi, err)
	}
	sealed := k.Seal("sec_1", "hunter2")
	if strings.Contains(sealed, "hunter2") || k.Stale(sealed) {
		t.Fatalf("sealed = %q", sealed)
	}
	if v, err := k.Unseal("sec_1", sealed); err != nil || v != "hunter2" {
		t.Fatalf("Unseal = %q, %v", v, err)
	}
	if _, err := k.Unseal("sec_2", sealed); err == nil {
		t.Fatal("a value sealed for sec_1 opened as sec_2's")
	}
	if _, err := k.Unseal("sec_1", sealed[:len(sealed)-2]+"AA"); err == nil {
		t.Fatal("a tampered value opened")
	}
	// Reopening keeps the key.
	k2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := k2.Unseal("sec_1", sealed); err != nil || v != "hunter2" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	// Rotation: the old key moves aside, a new one is made; both open.
	if err := os.Rename(filepath.Join(dir, KeyFile), filepath.Join(dir, OldKeyFile)); err != nil {
		t.Fatal(err)
	}
	k3, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k3.Stale(sealed) {
		t.Fatal("a value of the old key is not stale")
	}
	if v, err := k3.Unseal("sec_1", sealed); err != nil || v != "hunter2" {
		t.Fatalf("old value with the old key beside: %q, %v", v, err)
	}
	resealed := k3.Seal("sec_1", "hunter2")
	if k3.Stale(resealed) {
		t.Fatal("a fresh seal is stale")
	}
	os.Remove(filepath.Join(dir, OldKeyFile))
	k4, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k4.Unseal("sec_1", sealed); err == nil {
		t.Fatal("a value of a removed key opened")
	}
	if v, err := k4.Unseal("sec_1", resealed); err != nil || v != "hunter2" {
		t.Fatalf("resealed: %q, %v", v, err)
	}
}

func TestCheckName(t *testing.T) {
	for in, want := range map[string]string{"OpenAI_key-1": "openai_key-1", "a": "a"} {
		if got, err := CheckName(in); err != nil || got != want {
			t.Errorf("CheckName(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a b", "a{b}", "a.b", "SEC_x", strings.Repeat("a", 129)} {
		if _, err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) passed", bad)
		}
	}
}
