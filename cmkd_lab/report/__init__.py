"""Reporting: :mod:`.figures` (plotly builders in one style; HTML/PNG/SVG export), :mod:`.widgets`
(Explore sections) and :mod:`.gallery` (the static site of executed notebooks; its page template
is ``gallery_template/``). Import the module you need: plotly loads only with :mod:`.figures`."""
