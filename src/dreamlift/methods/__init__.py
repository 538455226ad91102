"""Methods: thin compositions of fields, priors and guidance that own a schedule."""
