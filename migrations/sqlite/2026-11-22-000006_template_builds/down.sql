DROP TABLE template_builds;
