"""Operating the box over the years: upgrades (`callvault upgrade`), diagnostics
(`callvault doctor`), support bundles (`callvault support-bundle`) and progress display."""
