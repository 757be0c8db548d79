package interp

import (
	"encoding/json"
	"sort"
	"strings"
)

// R contexts run IRkernel (Debian's r-cran-irkernel), a Jupyter kernel: the
// server speaks the Jupyter protocol to it (kernel.go), over ZMTP, and its
// messages map to the SDK's lines as the other kernels' do. The code the
// server runs in it itself (env vars) is R.

// rString quotes s as an R string literal. JSON's string escapes (\", \\,
// \n, \t, \uXXXX, ...) are R's as well.
func rString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// rEnvCode returns the R that sets env for one execution, saving what it
// replaces in an option (out of the user's workspace), and the R that puts
// it back.
func rEnvCode(env map[string]string) (set, restore string) {
	names := make([]string, 0, len(env))
	for n := range env {
		names = append(names, n)
	}
	sort.Strings(names)
	var ns, vs []string
	for _, n := range names {
		ns = append(ns, rString(n))
		vs = append(vs, rString(env[n]))
	}
	n := "c(" + strings.Join(ns, ", ") + ")"
	v := "c(" + strings.Join(vs, ", ") + ")"
	set = "local({n <- " + n + "; v <- " + v + "\n" +
		"options(.sbx_env_saved = Sys.getenv(n, unset = NA, names = TRUE))\n" +
		"do.call(Sys.setenv, as.list(stats::setNames(v, n)))})"
	restore = "local({s <- getOption('.sbx_env_saved'); options(.sbx_env_saved = NULL)\n" +
		"for (n in names(s)) if (is.na(s[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, stats::setNames(list(s[[n]]), n))})"
	return set, restore
}
