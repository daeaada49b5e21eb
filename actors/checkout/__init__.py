"""The checkout saga: reserve -> fraud -> authorise -> order + commit -> capture, each step undoable."""
