#!/bin/sh
# Prints text, no JSON: still a success, its stdout kept.
echo "just some text"
echo "and more"
