"""The composition roots: where Parley's services and adapters are wired together (`parley dev`,
`parley run ROLE`, `parley up`, the CLI). Nothing imports this package but its entry points."""
