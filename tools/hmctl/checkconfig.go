package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/healthmesh/healthmesh/shared/config"
)

// configReport is check-config's verdict, also its JSON form.
type configReport struct {
	File     string        `json:"file"`
	Valid    bool          `json:"valid"`
	Error    string        `json:"error,omitempty"` // unreadable file or YAML syntax
	Errors   []configIssue `json:"errors,omitempty"`
	Warnings []configIssue `json:"warnings,omitempty"`
	// Counts of a valid file.
	VirtualServers   int `json:"virtual_servers,omitempty"`
	VirtualAddresses int `json:"virtual_addresses,omitempty"`
	Services         int `json:"services,omitempty"`
}

type configIssue struct {
	Path    string `json:"path,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func (c *cli) checkConfig(args []string) error {
	fs, _ := c.newFlags("check-config")
	noFileCheck := fs.Bool("no-file-check", false, "do not check that scripts and credential files exist (validating for another host)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one FILE, got %d arguments", len(pos))
	}
	opts := config.Options{}
	if *noFileCheck {
		opts.CheckFile = config.NoFileCheck
	}
	rep := checkFile(opts, pos[0])
	if *asJSON {
		if err := writeJSON(c, rep); err != nil {
			return err
		}
	} else if _, err := fmt.Fprint(c.stdout, rep.text()); err != nil {
		return err
	}
	if !rep.Valid {
		return silentError{}
	}
	return nil
}

func checkFile(opts config.Options, path string) configReport {
	rep := configReport{File: path}
	cfg, warns, err := opts.Load(path)
	for _, w := range warns {
		rep.Warnings = append(rep.Warnings, configIssue{Path: w.Path, Line: w.Line, Message: w.Msg})
	}
	var (
		verr *config.ValidationError
		serr *config.SyntaxError
	)
	switch {
	case errors.As(err, &verr):
		for _, is := range verr.Issues {
			rep.Errors = append(rep.Errors, configIssue{Path: is.Path, Line: is.Line, Message: is.Msg})
		}
	case errors.As(err, &serr):
		rep.Error = "YAML syntax: " + serr.Err.Error()
	case err != nil:
		rep.Error = err.Error()
	default:
		rep.Valid = true
		rep.VirtualServers, rep.VirtualAddresses, rep.Services = len(cfg.VirtualServers), len(cfg.VirtualAddresses), len(cfg.Services)
	}
	return rep
}

func (r configReport) text() string {
	var b strings.Builder
	plural := func(n int, what string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s", what)
		}
		return fmt.Sprintf("%d %ss", n, what)
	}
	switch {
	case r.Valid:
		fmt.Fprintf(&b, "%s: VALID (%s, %s, %s; %s)\n", r.File, plural(r.VirtualAddresses, "virtual-address block"),
			plural(r.VirtualServers, "virtual-server block"), plural(r.Services, "static service"), plural(len(r.Warnings), "warning"))
	case r.Error != "":
		fmt.Fprintf(&b, "%s: INVALID: %s\n", r.File, r.Error)
	default:
		fmt.Fprintf(&b, "%s: INVALID: %s, %s\n", r.File, plural(len(r.Errors), "error"), plural(len(r.Warnings), "warning"))
	}
	for _, is := range r.Errors {
		b.WriteString("error:   " + is.String() + "\n")
	}
	for _, is := range r.Warnings {
		b.WriteString("warning: " + is.String() + "\n")
	}
	return b.String()
}

// String is the validator's own "path: message (line N)".
func (i configIssue) String() string {
	return config.Issue{Path: i.Path, Line: i.Line, Msg: i.Message}.String()
}
