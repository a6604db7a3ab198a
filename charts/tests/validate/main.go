// Command validate checks the chart's observability artefacts offline, with the real types of the
// tools that consume them:
//
//	validate dashboard FILE [--exprs-out RULES] [--print-target "PANEL TITLE/REFID"]...
//	    FILE is a Grafana dashboard JSON. It must decode STRICTLY into the Grafana foundation SDK's
//	    types (unknown or mistyped fields, missing required ones: errors), every panel must be of a
//	    known type and every query a Prometheus one, ids unique, the grid within 24 columns without
//	    overlaps, and every $variable defined. With --exprs-out, every PromQL expression is written
//	    (variables replaced by sample values) as a recording rule, for `promtool check rules`.
//	    --print-target prints one panel query's expression so, on one line, to run it elsewhere.
//
//	validate monitoring FILE [--expect Kind=N ...] [--rules-equal RULES] [--rules-out RULES]
//	    FILE is `helm template` output. Each ServiceMonitor, PodMonitor and PrometheusRule must decode
//	    strictly into the prometheus-operator's monitoring.coreos.com/v1 Go types. --expect checks
//	    how many objects of a kind there are; --rules-equal checks that the PrometheusRules carry
//	    exactly the groups of a plain rules file; --rules-out writes the PrometheusRules' groups as a
//	    plain rules file (for promtool and for comparing with the chart's files/alerts.yaml).
//
//	validate values-doc VALUES README
//	    Every value of the chart's values.yaml is in the README's values table (itself or a
//	    parent), and every value the table names exists.
//
// Exit status 1 with one line per problem on stderr when anything is wrong.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var problems []string
	var err error
	switch os.Args[1] {
	case "dashboard":
		problems, err = runDashboard(os.Args[2], flags(os.Args[3:]))
	case "monitoring":
		problems, err = runMonitoring(os.Args[2], flags(os.Args[3:]))
	case "values-doc":
		if len(os.Args) != 4 {
			usage()
		}
		problems, err = runValuesDoc(os.Args[2], os.Args[3])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "validate: %v\n", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d problem(s)\n", os.Args[2], len(problems))
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: validate dashboard FILE [--exprs-out RULES] | validate monitoring FILE [--expect Kind=N]... [--rules-equal RULES] [--rules-out RULES] | validate values-doc VALUES README")
	os.Exit(2)
}

// flags parses "--name value" pairs; a name may repeat.
func flags(args []string) map[string][]string {
	out := map[string][]string{}
	for i := 0; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "--") || i+1 >= len(args) {
			usage()
		}
		out[args[i][2:]] = append(out[args[i][2:]], args[i+1])
		i++
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// Dashboards

// Grafana's built-in variables, and sample values for each dashboard variable when an expression
// is handed to promtool.
var builtinVariables = map[string]string{
	"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600", "__interval_ms": "60000",
	"__dashboard": "datashare", "__from": "0", "__to": "0",
}

var variableRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?`)

func runDashboard(path string, opts map[string][]string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	plugins.RegisterDefaultPlugins()

	var problems []string
	var d dashboard.Dashboard
	if err := d.UnmarshalJSONStrict(raw); err != nil {
		var build cog.BuildErrors
		if errors.As(err, &build) {
			for _, e := range build {
				problems = append(problems, "strict decode: "+e.Error())
			}
		} else {
			problems = append(problems, "strict decode: "+err.Error())
		}
	}
	if d.Uid == nil || *d.Uid == "" {
		problems = append(problems, "dashboard has no uid (Grafana's sidecar would make a new one on every load)")
	}
	if d.Title == nil || *d.Title == "" {
		problems = append(problems, "dashboard has no title")
	}

	defined := map[string]bool{}
	for name := range builtinVariables {
		defined[name] = true
	}
	samples := map[string]string{}
	for k, v := range builtinVariables {
		samples[k] = v
	}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
		switch v.Type {
		case dashboard.VariableTypeDatasource:
			samples[v.Name] = "prometheus"
		default:
			samples[v.Name] = ".+"
		}
		if v.Type == dashboard.VariableTypeQuery {
			if v.Query == nil {
				problems = append(problems, fmt.Sprintf("variable %s: no query", v.Name))
			}
		}
	}

	// Every panel, rows' nested ones included, in order.
	var panels []dashboard.Panel
	var grid []placed
	for i, p := range d.Panels {
		switch {
		case p.Panel != nil:
			panels = append(panels, *p.Panel)
		case p.RowPanel != nil:
			if p.RowPanel.Id == 0 {
				problems = append(problems, fmt.Sprintf("panels[%d]: a row has no id", i))
			}
			pos := p.RowPanel.GridPos
			if pos == nil {
				problems = append(problems, fmt.Sprintf("panels[%d]: row has no gridPos", i))
			} else {
				grid = append(grid, placed{p.RowPanel.Id, *pos})
			}
			panels = append(panels, p.RowPanel.Panels...)
		}
	}
	seen := map[uint32]string{}
	for _, g := range grid {
		seen[g.id] = "row"
	}
	var exprs []string
	printTargets := map[string]bool{}
	for _, t := range opts["print-target"] {
		printTargets[t] = true
	}
	for _, p := range panels {
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		where := fmt.Sprintf("panel %q", title)
		if p.Id == nil {
			problems = append(problems, where+": no id")
		} else if other, dup := seen[*p.Id]; dup {
			problems = append(problems, fmt.Sprintf("%s: id %d also used by %q", where, *p.Id, other))
		} else {
			seen[*p.Id] = title
		}
		if title == "" && p.Id != nil {
			problems = append(problems, fmt.Sprintf("panel id %d: no title", *p.Id))
		}
		if _, known := cog.ConfigForPanelcfgVariant(p.Type); !known {
			problems = append(problems, fmt.Sprintf("%s: panel type %q is not a Grafana panel the SDK knows (its options were not checked)", where, p.Type))
		}
		if p.GridPos == nil {
			problems = append(problems, where+": no gridPos")
		} else if p.Id != nil {
			grid = append(grid, placed{*p.Id, *p.GridPos})
		}
		if p.Datasource == nil || p.Datasource.Type == nil || *p.Datasource.Type != "prometheus" {
			problems = append(problems, where+": datasource is not of type prometheus")
		}
		if len(p.Targets) == 0 {
			problems = append(problems, where+": no queries")
		}
		refIDs := map[string]bool{}
		for i, t := range p.Targets {
			q, ok := t.(*prometheus.Dataquery)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: targets[%d] is not a Prometheus query (set its datasource type)", where, i))
				continue
			}
			if q.RefId == nil || *q.RefId == "" {
				problems = append(problems, fmt.Sprintf("%s: targets[%d] has no refId", where, i))
			} else if refIDs[*q.RefId] {
				problems = append(problems, fmt.Sprintf("%s: refId %s used twice", where, *q.RefId))
			} else {
				refIDs[*q.RefId] = true
			}
			if strings.TrimSpace(q.Expr) == "" {
				problems = append(problems, fmt.Sprintf("%s: targets[%d] has an empty expr", where, i))
				continue
			}
			for _, m := range variableRef.FindAllStringSubmatch(q.Expr, -1) {
				if !defined[m[1]] {
					problems = append(problems, fmt.Sprintf("%s: targets[%d] uses undefined variable $%s", where, i, m[1]))
				}
			}
			expr := variableRef.ReplaceAllStringFunc(q.Expr, func(ref string) string {
				return samples[variableRef.FindStringSubmatch(ref)[1]]
			})
			exprs = append(exprs, expr)
			if q.RefId != nil && p.Title != nil {
				if key := *p.Title + "/" + *q.RefId; printTargets[key] {
					// One line per expression, for a test to send to a real Prometheus.
					fmt.Println(strings.Join(strings.Fields(expr), " "))
					delete(printTargets, key)
				}
			}
		}
	}
	problems = append(problems, checkGrid(grid)...)
	for t := range printTargets {
		problems = append(problems, fmt.Sprintf("--print-target %s: no such panel title/refId", t))
	}

	if out := opts["exprs-out"]; len(out) > 0 {
		if err := writeExprRules(out[0], exprs); err != nil {
			return nil, err
		}
	}
	return problems, nil
}

// placed is one panel or row on the dashboard's grid.
type placed struct {
	id   uint32
	grid dashboard.GridPos
}

// checkGrid: every item within the 24 columns, none overlapping another.
func checkGrid(items []placed) []string {
	var problems []string
	for i, a := range items {
		if a.grid.W == 0 || a.grid.H == 0 || a.grid.X+a.grid.W > 24 {
			problems = append(problems, fmt.Sprintf("id %d: gridPos %+v is empty or wider than 24 columns", a.id, a.grid))
		}
		for _, b := range items[:i] {
			if a.grid.X < b.grid.X+b.grid.W && b.grid.X < a.grid.X+a.grid.W &&
				a.grid.Y < b.grid.Y+b.grid.H && b.grid.Y < a.grid.Y+a.grid.H {
				problems = append(problems, fmt.Sprintf("id %d overlaps id %d on the grid", a.id, b.id))
			}
		}
	}
	return problems
}

// writeExprRules writes the expressions as recording rules of one group, so that promtool parses
// every one of them with the real PromQL parser.
func writeExprRules(path string, exprs []string) error {
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	rules := make([]rule, 0, len(exprs))
	for i, e := range exprs {
		rules = append(rules, rule{Record: "dashboard:expr_" + strconv.Itoa(i), Expr: e})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard-expressions", "rules": rules}}}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// ---------------------------------------------------------------------------------------------
// prometheus-operator objects

func runMonitoring(path string, opts map[string][]string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var problems []string
	counts := map[string]int{}
	var groups []monitoringv1.RuleGroup
	for i, doc := range splitYAML(raw) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			problems = append(problems, fmt.Sprintf("document %d: %v", i, err))
			continue
		}
		if meta.APIVersion != "monitoring.coreos.com/v1" {
			continue
		}
		where := fmt.Sprintf("%s %s", meta.Kind, meta.Metadata.Name)
		counts[meta.Kind]++
		switch meta.Kind {
		case "ServiceMonitor":
			var sm monitoringv1.ServiceMonitor
			if err := yaml.UnmarshalStrict(doc, &sm); err != nil {
				problems = append(problems, where+": "+err.Error())
				continue
			}
			if len(sm.Spec.Endpoints) == 0 {
				problems = append(problems, where+": no endpoints")
			}
			if len(sm.Spec.Selector.MatchLabels) == 0 && len(sm.Spec.Selector.MatchExpressions) == 0 {
				problems = append(problems, where+": empty selector (would select every Service)")
			}
		case "PodMonitor":
			var pm monitoringv1.PodMonitor
			if err := yaml.UnmarshalStrict(doc, &pm); err != nil {
				problems = append(problems, where+": "+err.Error())
				continue
			}
			if len(pm.Spec.PodMetricsEndpoints) == 0 {
				problems = append(problems, where+": no podMetricsEndpoints")
			}
			for i, e := range pm.Spec.PodMetricsEndpoints {
				if e.Port == nil || *e.Port == "" {
					problems = append(problems, fmt.Sprintf("%s: podMetricsEndpoints[%d] names no port", where, i))
				}
			}
		case "PrometheusRule":
			var pr monitoringv1.PrometheusRule
			if err := yaml.UnmarshalStrict(doc, &pr); err != nil {
				problems = append(problems, where+": "+err.Error())
				continue
			}
			if len(pr.Spec.Groups) == 0 {
				problems = append(problems, where+": no rule groups")
			}
			groups = append(groups, pr.Spec.Groups...)
		default:
			problems = append(problems, where+": unexpected kind")
		}
	}
	for _, e := range opts["expect"] {
		kind, n, ok := strings.Cut(e, "=")
		want, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("--expect %q: want Kind=N", e)
		}
		if counts[kind] != want {
			problems = append(problems, fmt.Sprintf("%d %s object(s), want %d", counts[kind], kind, want))
		}
	}
	for _, file := range opts["rules-equal"] {
		// The PrometheusRules together must carry exactly the groups of this plain rules file.
		content, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var plain struct {
			Groups []monitoringv1.RuleGroup `json:"groups"`
		}
		if err := yaml.UnmarshalStrict(content, &plain); err != nil {
			problems = append(problems, file+": "+err.Error())
		} else if !reflect.DeepEqual(plain.Groups, groups) {
			problems = append(problems, fmt.Sprintf("the PrometheusRules' groups differ from %s", file))
		}
	}
	if out := opts["rules-out"]; len(out) > 0 {
		doc, err := yaml.Marshal(map[string]any{"groups": groups})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(out[0], doc, 0o644); err != nil {
			return nil, err
		}
	}
	kinds := make([]string, 0, len(counts))
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	fmt.Printf("%s: monitoring.coreos.com/v1 objects: %s\n", path, strings.Join(kinds, " "))
	return problems, nil
}

// splitYAML splits a multi-document YAML stream on its "---" lines.
func splitYAML(raw []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(raw), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, bytes.TrimSpace([]byte(d)))
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// The chart README's values table

var valuesTableRow = regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_.]+)` \\|")

func runValuesDoc(valuesPath, readmePath string) ([]string, error) {
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		return nil, err
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		return nil, err
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", valuesPath, err)
	}
	all := map[string]bool{}
	var leaves []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if prefix != "" {
			all[prefix] = true
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			leaves = append(leaves, prefix)
			return
		}
		for k, child := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, child)
		}
	}
	walk("", values)
	sort.Strings(leaves)

	// The "## Values" section only.
	section, found := "", false
	if _, after, ok := strings.Cut(string(readme), "\n## Values\n"); ok {
		section, _, _ = strings.Cut(after, "\n## ")
		found = true
	}
	if !found {
		return []string{readmePath + ": no \"## Values\" section"}, nil
	}
	documented := map[string]bool{}
	for _, m := range valuesTableRow.FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	var problems []string
	for _, leaf := range leaves {
		ok := false
		for p := leaf; p != ""; {
			if documented[p] {
				ok = true
				break
			}
			i := strings.LastIndex(p, ".")
			if i < 0 {
				break
			}
			p = p[:i]
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("value %s is not in %s's values table", leaf, readmePath))
		}
	}
	for d := range documented {
		if !all[d] {
			problems = append(problems, fmt.Sprintf("%s's values table names %s, which values.yaml does not have", readmePath, d))
		}
	}
	sort.Strings(problems)
	return problems, nil
}
