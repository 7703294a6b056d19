#!/usr/bin/env python3
"""No import circle between the top-level modules of any crate.

A top-level module is a file `src/x.rs` or a folder `src/x/` of a crate. Module `a` depends on
module `b` when a file of `a` names `crate::b` (in a path or a `use crate::{..}` group). Test
modules (after `#[cfg(test)]`) and comments are left out. Prints every circle found and exits 1 if there is
one. Run by scripts/test.sh; usage: scripts/lint/module-circles.py [crates-dir]
"""
import os
import re
import sys


def graph(src):
    mods = {}
    for f in os.listdir(src):
        p = os.path.join(src, f)
        if f.endswith('.rs') and f not in ('lib.rs', 'main.rs'):
            mods[f[:-3]] = [p]
        elif os.path.isdir(p) and os.path.exists(os.path.join(p, 'mod.rs')):
            mods[f] = [os.path.join(d, x) for d, _, fs in os.walk(p) for x in fs if x.endswith('.rs')]
    g = {m: set() for m in mods}
    for m, files in mods.items():
        for p in files:
            text = open(p, encoding='utf-8').read().split('#[cfg(test)]')[0]
            text = re.sub(r'//[^\n]*', '', text)  # comments, doc links included, import nothing
            refs = re.findall(r'crate::([a-z_0-9]+)', text)
            for group in re.findall(r'use crate::\{([^}]*)\}', text):
                refs += re.findall(r'(?:^|,)\s*([a-z_0-9]+)', group)
            g[m].update(r for r in refs if r in mods and r != m)
    return g


def circles(g):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else 'crates'
    found = False
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, 'src')
        if not os.path.isdir(src):
            continue
        for c in circles(graph(src)):
            found = True
            print(f'{crate}: modules import each other in a circle: {", ".join(c)}')
    if found:
        sys.exit(1)
    print('module circles: none')


if __name__ == '__main__':
    main()
