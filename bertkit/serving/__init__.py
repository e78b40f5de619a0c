"""`bertkit serve`'s parts: the HTTP app (app.py), the batching of concurrent requests (batching.py) and the page
to try a model by hand (page.html)."""
