"""The fronts: the typer CLI and its lean entry, the hook worker, the rendering of every verb."""
