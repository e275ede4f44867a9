"""Everything shown to a person: terminal rendering of every command and the HTML run report; core modules return data."""
