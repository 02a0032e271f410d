"""OAuth consent flows: provider configs as data with compliance hooks, one-time state, the one OAuth engine."""

import warnings

import authlib.deprecate

# Authlib 1.9 nudges towards the httpx2 fork; synchub pins httpx deliberately (library-notes: pick one).
# authlib.deprecate installs an "always" filter on import, so ours must come after it.
warnings.filterwarnings("ignore", "The httpx module is deprecated", authlib.deprecate.AuthlibDeprecationWarning)
