"""Tooling around the runtime: the demo, traffic generators, the detection benchmark, the
independent recount and the service launchers the tests and benchmarks use. The runtime
(everything else under ``streams/``) never imports from here."""
