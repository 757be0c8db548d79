package template

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbxdev/sbx/internal/errdefs"
)

// importPlatform is the platform picked from multi-platform images: sbx
// runs linux/amd64 sandboxes.
var importPlatform = v1.Platform{OS: "linux", Architecture: "amd64"}

// ImageFromTarball opens a docker-archive tarball (docker save) holding one
// image. A missing or unreadable archive is errdefs.ErrInvalidArgument.
func ImageFromTarball(path string) (v1.Image, error) {
	if err := statSource(path, false); err != nil {
		return nil, err
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s is not a docker-archive tarball with one image: %v", path, err)
	}
	return img, nil
}

// ImageFromLayout opens the image in an OCI image layout directory: the
// index's linux/amd64 image, or its only one.
func ImageFromLayout(dir string) (v1.Image, error) {
	if err := statSource(dir, true); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s is not an OCI image layout: %v", dir, err)
	}
	img, err := pickImage(idx, 0)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "OCI layout %s: %v", dir, err)
	}
	return img, nil
}

// pickImage returns the index's linux/amd64 image or its only manifest,
// descending into nested indexes (as buildx writes them) a few levels.
func pickImage(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 3 {
		return nil, errors.New("image indexes nested too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var pick *v1.Descriptor
	if len(m.Manifests) == 1 {
		pick = &m.Manifests[0]
	} else {
		for i, d := range m.Manifests {
			if d.Platform != nil && d.Platform.OS == importPlatform.OS && d.Platform.Architecture == importPlatform.Architecture {
				pick = &m.Manifests[i]
				break
			}
		}
	}
	if pick == nil {
		return nil, fmt.Errorf("no %s/%s image among %d manifests", importPlatform.OS, importPlatform.Architecture, len(m.Manifests))
	}
	if pick.MediaType.IsIndex() {
		sub, err := idx.ImageIndex(pick.Digest)
		if err != nil {
			return nil, err
		}
		return pickImage(sub, depth+1)
	}
	return idx.Image(pick.Digest)
}

// ImageFromRegistry returns image ref from its registry (linux/amd64 for a
// multi-platform ref); layers are fetched as Store.Import reads them.
// insecure allows plain HTTP, for registries on this machine.
func ImageFromRegistry(ctx context.Context, ref string, insecure bool) (v1.Image, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "bad image reference %q: %v", ref, err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(importPlatform))
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, errdefs.Wrap(errdefs.ErrNotFound, err, "image %s not found in its registry", r)
		}
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "fetch image %s: %v", r, err)
	}
	return img, nil
}

func statSource(path string, dir bool) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s does not exist on the server", path)
	}
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "%s: %v", path, err)
	}
	if st.IsDir() != dir {
		if dir {
			return errdefs.New(errdefs.ErrInvalidArgument, "%s is not a directory", path)
		}
		return errdefs.New(errdefs.ErrInvalidArgument, "%s is a directory, not a tarball", path)
	}
	return nil
}
