"""The compact head: built physically small for one mask, trained, scored, counted."""
