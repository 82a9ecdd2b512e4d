package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/virtcontainers/vc/pkg/imagestore"
)

func init() {
	register("login", command{usage: "-u USER [-p PASSWORD | --password-stdin] [REGISTRY]", short: "log in to a registry (docker's config.json)", run: loginCmd})
	register("logout", command{usage: "[REGISTRY]", short: "log out of a registry", run: logoutCmd})
}

// credentialKey is the key docker keeps a registry's credentials under
// in config.json: Docker Hub's is its v1 URL.
func credentialKey(registry string) (string, error) {
	if registry == "" {
		registry = name.DefaultRegistry
	}
	reg, err := name.NewRegistry(registry)
	if err != nil {
		return "", fmt.Errorf("registry %q: %w: %w", registry, err, errdefs.ErrInvalidArgument)
	}
	if reg.RegistryStr() == name.DefaultRegistry {
		return "https://index.docker.io/v1/", nil
	}
	return reg.RegistryStr(), nil
}

func loginCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("login", commands["login"].usage)
	user := fs.String("u", "", "user name")
	fs.StringVar(user, "username", "", "the same as -u")
	password := fs.String("p", "", "password (visible to other users in ps: prefer --password-stdin)")
	fs.StringVar(password, "password", "", "the same as -p")
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 || *user == "" || (*password == "") == !*stdin {
		fs.Usage()
		return fmt.Errorf("want -u USER, one of -p and --password-stdin, and at most one REGISTRY: %w", errdefs.ErrInvalidArgument)
	}
	if *stdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("--password-stdin: %w", err)
		}
		*password = strings.TrimRight(line, "\r\n")
	}
	registry := fs.Arg(0)
	key, err := credentialKey(registry)
	if err != nil {
		return err
	}
	if registry == "" {
		registry = name.DefaultRegistry
	}
	if err := imagestore.CheckLogin(ctx, registry, *user, *password, nil); err != nil {
		return err
	}
	cf, err := dockerconfig.Load(dockerconfig.Dir())
	if err != nil {
		return fmt.Errorf("docker config %s: %w", dockerconfig.Dir(), err)
	}
	if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{Username: *user, Password: *password, ServerAddress: key}); err != nil {
		return fmt.Errorf("save credentials of %s in %s: %w", key, cf.Filename, err)
	}
	fmt.Printf("Login Succeeded (credentials in %s)\n", cf.Filename)
	return nil
}

func logoutCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("logout", commands["logout"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return fmt.Errorf("want at most one REGISTRY: %w", errdefs.ErrInvalidArgument)
	}
	key, err := credentialKey(fs.Arg(0))
	if err != nil {
		return err
	}
	cf, err := dockerconfig.Load(dockerconfig.Dir())
	if err != nil {
		return fmt.Errorf("docker config %s: %w", dockerconfig.Dir(), err)
	}
	if _, ok := cf.AuthConfigs[key]; !ok && cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
		return fmt.Errorf("not logged in to %s: %w", key, errdefs.ErrNotFound)
	}
	if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
		return fmt.Errorf("remove credentials of %s from %s: %w", key, cf.Filename, err)
	}
	fmt.Printf("Removing login credentials for %s\n", key)
	return nil
}
