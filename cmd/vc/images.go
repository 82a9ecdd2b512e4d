package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/virtcontainers/vc/pkg/imagestore"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("pull", command{usage: "[-q] IMAGE", short: "pull an image from a registry", run: pullCmd})
	register("images", command{usage: "[-q] [--format table|json]", short: "list images", run: imagesCmd})
	register("rmi", command{usage: "[-f] IMAGE...", short: "remove images (-f: even if a container uses them)", run: rmiCmd})
	register("load", command{usage: "-i FILE", short: "load images from a docker archive or OCI layout tarball", run: loadCmd})
	register("save", command{usage: "-o FILE IMAGE...", short: "save images to a docker archive (docker load, podman load)", run: saveCmd})
}

// openImageStore opens the image store under the data root.
func openImageStore(g *globals) (*imagestore.Store, error) {
	st, err := imagestore.Open(filepath.Join(g.dataRoot, "images"))
	if err != nil {
		return nil, err
	}
	// A container keeps its image until it is removed, whatever becomes
	// of the image's name. (Containers of this state root: one of another
	// keeps its layers only while its overlay is mounted.)
	st.KeepInUse(func() ([]string, error) {
		used, err := containerImages(context.Background(), g)
		return slices.Collect(maps.Keys(used)), err
	})
	return st, nil
}

func pullCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("pull", commands["pull"].usage)
	quiet := fs.Bool("q", false, "print only the image's name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("IMAGE: want one, got %d: %w", fs.NArg(), errdefs.ErrInvalidArgument)
	}
	st, err := openImageStore(g)
	if err != nil {
		return err
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	p := newProgress(os.Stdout, *quiet)
	img, err := st.Pull(ctx, fs.Arg(0), imagestore.PullOptions{Progress: p.report})
	p.finish()
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Printf("Digest: %s\n", img.Digest)
	}
	fmt.Println(imagestore.ShortName(img.Name))
	return nil
}

// interruptible ends ctx on Ctrl-C too: a pull or load stopped halfway
// leaves nothing (the store removes what it staged).
func interruptible(ctx context.Context) (context.Context, func()) {
	return signal.NotifyContext(ctx, os.Interrupt)
}

// progress prints a pull's or load's layers: on a terminal, one line a
// layer rewritten as its bytes come; otherwise a line a layer once it is
// there.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	open  bool // a line is being rewritten
}

func newProgress(w *os.File, quiet bool) *progress {
	return &progress{w: w, tty: isTerminal(w), quiet: quiet}
}

func (p *progress) report(e imagestore.Progress) {
	if p.quiet {
		return
	}
	id := shortDigest(e.Layer)
	line := ""
	switch e.Status {
	case "exists":
		line = fmt.Sprintf("%s: already exists", id)
	case "downloading":
		if !p.tty {
			return
		}
		line = fmt.Sprintf("%s: downloading %s / %s", id, human(uint64(e.Done)), human(uint64(e.Total)))
	case "unpacking":
		if !p.tty {
			return
		}
		line = fmt.Sprintf("%s: unpacking %s", id, human(uint64(e.Total)))
	case "verifying":
		if !p.tty {
			return
		}
		line = fmt.Sprintf("%s: verifying %s", id, human(uint64(e.Total)))
	case "done":
		line = fmt.Sprintf("%s: done %s", id, human(uint64(e.Total)))
	}
	final := e.Status == "exists" || e.Status == "done"
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.open = !final
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

// finish ends a line left open by an interrupted layer.
func (p *progress) finish() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// imageRow is a line of vc images, and its JSON.
type imageRow struct {
	Repository string    `json:"Repository"`
	Tag        string    `json:"Tag"`
	ID         string    `json:"ID"`
	Digest     string    `json:"Digest"`
	Created    time.Time `json:"CreatedAt"`
	Size       int64     `json:"Size"`
}

func rowOf(img *imagestore.Image) imageRow {
	r := imageRow{Repository: imagestore.ShortName(img.Name), Tag: "<none>", ID: shortDigest(img.ID), Digest: img.Digest, Size: img.Size}
	if ref, err := name.ParseReference(img.Name); err == nil {
		r.Repository = imagestore.ShortName(ref.Context().Name())
		if t, ok := ref.(name.Tag); ok {
			r.Tag = t.TagStr()
		}
	}
	if img.Config != nil {
		r.Created = img.Config.Created.Time
	}
	return r
}

func imagesCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("images", commands["images"].usage)
	quiet := fs.Bool("q", false, "print image ids only")
	format := fs.String("format", "table", "table, or json (a JSON object a line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format %q: want table or json: %w", *format, errdefs.ErrInvalidArgument)
	}
	st, err := openImageStore(g)
	if err != nil {
		return err
	}
	list, err := st.List()
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(os.Stdout)
		for _, img := range list {
			if err := enc.Encode(rowOf(img)); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	if !*quiet {
		fmt.Fprintln(w, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	}
	for _, img := range list {
		r := rowOf(img)
		if *quiet {
			fmt.Fprintln(w, r.ID)
			continue
		}
		created := "?"
		if !r.Created.IsZero() {
			created = humanAgo(time.Since(r.Created))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, r.ID, created, human(uint64(r.Size)))
	}
	return w.Flush()
}

func rmiCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("rmi", commands["rmi"].usage)
	force := fs.Bool("f", false, "remove the image's name even if a container uses it (the image stays until its containers are removed)")
	fs.BoolVar(force, "force", false, "the same as -f")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("IMAGE: missing: %w", errdefs.ErrInvalidArgument)
	}
	st, err := openImageStore(g)
	if err != nil {
		return err
	}
	for _, ref := range fs.Args() {
		names, err := st.Remove(ref, *force, func(img *imagestore.Image) []string { return imageUsers(ctx, g, img) })
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Printf("Untagged: %s\n", imagestore.ShortName(n))
		}
	}
	return nil
}

// imageUsers names the containers (any state) whose image is img.
func imageUsers(ctx context.Context, g *globals, img *imagestore.Image) []string {
	used, err := containerImages(ctx, g)
	if err != nil {
		// Unknown users are users: refuse rather than guess.
		return []string{fmt.Sprintf("(cannot list containers: %v)", err)}
	}
	return used[img.Digest]
}

// containerImages maps the manifest digest of each image a container of
// the state root has to those containers ("ID (STATE)"): whatever their
// state, from their records and run options, and a container being run
// again (its options are in its carry directory meanwhile).
func containerImages(ctx context.Context, g *globals) (map[string][]string, error) {
	used := map[string][]string{}
	add := func(digest, id string, st vc.State) {
		user := fmt.Sprintf("%s (%s)", id, st)
		if digest != "" && !slices.Contains(used[digest], user) {
			used[digest] = append(used[digest], user)
		}
	}
	list, err := vc.ListSandbox(ctx, g.stateRoot)
	if err != nil {
		return nil, err
	}
	for _, sb := range list {
		cs, _ := vc.ContainerStatuses(ctx, g.stateRoot, sb.ID)
		for _, c := range cs {
			add(c.Config.Annotations[imageDigestAnnotation], c.ID, c.State)
		}
		if o, err := savedOptions(g, sb.ID); err == nil && len(cs) == 0 {
			add(o.ImageDigest, sb.ID, sb.State)
		}
	}
	carried, err := carriedOptions(g)
	if err != nil {
		return nil, err
	}
	for _, o := range carried {
		add(o.ImageDigest, o.ID, "restarting")
	}
	return used, nil
}

// pruneImages collects, after containers were removed, the images they
// kept that no name points at any more (rmi -f while they were there).
func pruneImages(g *globals) {
	if _, err := os.Stat(filepath.Join(g.dataRoot, "images")); err != nil {
		return // no store
	}
	st, err := openImageStore(g)
	if err == nil {
		err = st.Prune()
	}
	if err != nil {
		slog.Warn("image store: collecting the images of removed containers", "err", err)
	}
}

func loadCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("load", commands["load"].usage)
	in := fs.String("i", "", "the tarball: a docker archive (docker save, podman save) or an OCI layout (podman save --format oci-archive)")
	fs.StringVar(in, "input", "", "the same as -i")
	quiet := fs.Bool("q", false, "print only the names loaded")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || fs.NArg() != 0 {
		fs.Usage()
		return fmt.Errorf("-i FILE: missing (reading stdin is not supported): %w", errdefs.ErrInvalidArgument)
	}
	st, err := openImageStore(g)
	if err != nil {
		return err
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	p := newProgress(os.Stdout, *quiet)
	imgs, err := st.Load(ctx, *in, p.report)
	p.finish()
	for _, img := range imgs {
		fmt.Printf("Loaded image: %s\n", imagestore.ShortName(img.Name))
	}
	return err
}

func saveCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("save", commands["save"].usage)
	out := fs.String("o", "", "the tarball to write (a docker archive)")
	fs.StringVar(out, "output", "", "the same as -o")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("-o FILE and IMAGE: want both (writing to stdout is not supported): %w", errdefs.ErrInvalidArgument)
	}
	st, err := openImageStore(g)
	if err != nil {
		return err
	}
	ctx, stop := interruptible(ctx)
	defer stop()
	return st.Save(ctx, *out, fs.Args())
}

// humanAgo says how long ago as docker's images does: "3 weeks ago".
func humanAgo(d time.Duration) string {
	units := []struct {
		d    time.Duration
		name string
	}{{365 * 24 * time.Hour, "year"}, {30 * 24 * time.Hour, "month"}, {7 * 24 * time.Hour, "week"},
		{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}}
	for _, u := range units {
		if n := int64(d / u.d); n >= 1 {
			if n == 1 {
				return "1 " + u.name + " ago"
			}
			return fmt.Sprintf("%d %ss ago", n, u.name)
		}
	}
	return "just now"
}
