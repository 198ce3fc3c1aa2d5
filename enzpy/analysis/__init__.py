"""Analyses over enzpy IR that AD consults (activity, later types and caching)."""
