// Command protoextract derives sbx's envd-compatible .proto files from the
// protobuf file descriptors that the e2b npm package embeds in its bundle.
//
// The e2b JavaScript SDK is the reference for the wire format sbx must speak:
// its dist/index.js calls protobuf-es's fileDesc("<base64>") once per .proto
// file. This tool finds those calls, decodes each FileDescriptorProto and
// prints it back as .proto source, so the Go code generated from proto/ is
// wire-compatible with the SDK by construction.
//
// Usage:
//
//	go run ./tools/protoextract -bundle node_modules/e2b/dist/index.js -out proto
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/protoprint"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// Well-known types the envd protos import.
	_ "google.golang.org/protobuf/types/known/timestamppb"
)

// goPackage maps an envd proto package to the Go import path sbx generates it into.
var goPackage = map[string]string{
	"process":    "github.com/sbxdev/sbx/gen/process;process",
	"filesystem": "github.com/sbxdev/sbx/gen/filesystem;filesystem",
}

func main() {
	bundle := flag.String("bundle", "node_modules/e2b/dist/index.js", "path to the e2b package's dist/index.js")
	out := flag.String("out", "proto", "directory to write .proto files into")
	flag.Parse()
	if err := run(*bundle, *out); err != nil {
		log.Fatal(err)
	}
}

func run(bundle, out string) error {
	src, err := os.ReadFile(bundle)
	if err != nil {
		return fmt.Errorf("read bundle: %w", err)
	}
	re := regexp.MustCompile(`fileDesc\)\("([A-Za-z0-9+/=]+)"`)
	matches := re.FindAllSubmatch(src, -1)
	if len(matches) == 0 {
		return fmt.Errorf("no embedded file descriptors found in %s", bundle)
	}
	files := new(protoregistry.Files)
	written := 0
	for _, m := range matches {
		raw, err := base64.StdEncoding.DecodeString(string(m[1]))
		if err != nil {
			// protobuf-es may drop base64 padding.
			raw, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(string(m[1]), "="))
			if err != nil {
				return fmt.Errorf("decode descriptor: %w", err)
			}
		}
		fdp := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(raw, fdp); err != nil {
			return fmt.Errorf("unmarshal descriptor: %w", err)
		}
		gp, ok := goPackage[fdp.GetPackage()]
		if !ok {
			continue // not an envd service (e.g. the template builder's own types)
		}
		// protobuf-es embeds descriptors with their dependency list cleared
		// (it passes the dependencies to fileDesc separately), so restore it
		// from the types the file refers to.
		fdp.Dependency = dependencies(fdp, resolver{files})
		if fdp.Options == nil {
			fdp.Options = new(descriptorpb.FileOptions)
		}
		fdp.Options.GoPackage = proto.String(gp)
		fd, err := protodesc.NewFile(fdp, resolver{files})
		if err != nil {
			return fmt.Errorf("build descriptor %s: %w", fdp.GetName(), err)
		}
		if err := files.RegisterFile(fd); err != nil {
			return fmt.Errorf("register %s: %w", fdp.GetName(), err)
		}
		d, err := desc.WrapFile(fd)
		if err != nil {
			return fmt.Errorf("wrap %s: %w", fdp.GetName(), err)
		}
		p := protoprint.Printer{Compact: false, SortElements: false, Indent: "  "}
		var sb strings.Builder
		sb.WriteString("// Code derived by tools/protoextract from the e2b npm package's embedded\n// descriptors. DO NOT EDIT: regenerate with `go generate ./gen`.\n\n")
		if err := p.PrintProtoFile(d, &sb); err != nil {
			return fmt.Errorf("print %s: %w", fdp.GetName(), err)
		}
		path := filepath.Join(out, fdp.GetName())
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			return err
		}
		written++
		fmt.Fprintln(os.Stderr, "wrote", path)
	}
	if written != len(goPackage) {
		return fmt.Errorf("found %d of %d envd descriptors", written, len(goPackage))
	}
	return nil
}

// resolver finds imports first among the files this run decoded, then among
// the well-known types linked into the binary.
type resolver struct{ local *protoregistry.Files }

func (r resolver) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.local.FindFileByPath(p); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(p)
}

func (r resolver) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.local.FindDescriptorByName(n); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(n)
}

// dependencies lists the files that define the types fdp refers to but does
// not define itself.
func dependencies(fdp *descriptorpb.FileDescriptorProto, r resolver) []string {
	seen := map[string]bool{}
	var deps []string
	add := func(typeName string) {
		name := protoreflect.FullName(strings.TrimPrefix(typeName, "."))
		if typeName == "" || strings.HasPrefix(string(name), fdp.GetPackage()+".") {
			return
		}
		d, err := r.FindDescriptorByName(name)
		if err != nil {
			return // protodesc.NewFile reports the unresolved type
		}
		if p := d.ParentFile().Path(); !seen[p] {
			seen[p] = true
			deps = append(deps, p)
		}
	}
	var walk func(msgs []*descriptorpb.DescriptorProto)
	walk = func(msgs []*descriptorpb.DescriptorProto) {
		for _, m := range msgs {
			for _, f := range m.Field {
				add(f.GetTypeName())
			}
			walk(m.NestedType)
		}
	}
	walk(fdp.MessageType)
	for _, s := range fdp.Service {
		for _, m := range s.Method {
			add(m.GetInputType())
			add(m.GetOutputType())
		}
	}
	return deps
}
