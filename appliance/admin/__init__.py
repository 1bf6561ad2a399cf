"""The admin side: the JSON API (and, with the admin UI issue, the pages) on Litestar."""
