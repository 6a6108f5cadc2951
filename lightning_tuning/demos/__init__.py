"""Demo tasks: plain LightningModules and DataModules that know nothing of this package."""
