"""The simulator: fake external parties that speak the real protocol over HTTP (Standard Webhooks),
for `gongji serve`, the tests and the benchmarks. It imports nothing from workflows or models: it knows
Gongji only through the wire, as a provincial platform would."""
