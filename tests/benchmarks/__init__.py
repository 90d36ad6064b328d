"""Tests of the benchmark scripts' shared command line and measuring tools."""
