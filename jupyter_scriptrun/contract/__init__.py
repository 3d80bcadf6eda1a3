"""What a script is and how it talks: its metadata block, where scripts are found, and the
script protocol (environment in, JSON result out)."""
