// Loads docs/openapi.yaml and compiles its schemas with Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const Ajv2020 = require('ajv/dist/2020').default;
const YAML = require('yaml');

const DOCUMENT_PATH = path.resolve(__dirname, '../../docs/openapi.yaml');

// The id under which components.schemas is registered as $defs, so that
// "#/components/schemas/X" can be rewritten to "<id>#/$defs/X".
const SCHEMAS_ID = 'urn:userops:openapi-schemas';
const SCHEMA_REF_PREFIX = '#/components/schemas/';

function loadDocument(file = DOCUMENT_PATH) {
	return YAML.parse(fs.readFileSync(file, 'utf8'));
}

// Returns the value at the local JSON pointer REF ("#/a/b") of DOCUMENT, or undefined.
function resolvePointer(document, ref) {
	if (typeof ref !== 'string' || !ref.startsWith('#/'))
		return undefined;
	let node = document;
	for (const raw of ref.slice(2).split('/')) {
		const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
		if (node === null || typeof node !== 'object' || !(key in node))
			return undefined;
		node = node[key];
	}
	return node;
}

// Follows $ref until OBJECT is no Reference Object (responses, parameters, headers).
function dereference(document, object) {
	let seen = 0;
	while (object && typeof object.$ref === 'string') {
		object = resolvePointer(document, object.$ref);
		if (++seen > 16)
			throw new Error('$ref chain longer than 16 links');
	}
	return object;
}

// Copies SCHEMA with every "#/components/schemas/X" reference pointed at the registered $defs.
function rewriteSchemaRefs(schema) {
	if (Array.isArray(schema))
		return schema.map(rewriteSchemaRefs);
	if (schema === null || typeof schema !== 'object')
		return schema;
	const copy = {};
	for (const [key, value] of Object.entries(schema)) {
		if (key === '$ref' && typeof value === 'string' && value.startsWith(SCHEMA_REF_PREFIX))
			copy[key] = `${SCHEMAS_ID}#/$defs/${value.slice(SCHEMA_REF_PREFIX.length)}`;
		else
			copy[key] = rewriteSchemaRefs(value);
	}
	return copy;
}

// Creates a strict Ajv with the document's named schemas registered. Strict
// mode rejects unknown keywords, so a misspelt one such as
// "additionalProperty" fails instead of being ignored. The keywords that only
// OpenAPI defines (example, discriminator, xml, externalDocs) are allowed.
function createValidator(document) {
	const ajv = new Ajv2020({
		strict: true,
		strictTypes: false,
		strictRequired: false,
		allowUnionTypes: true,
		allErrors: false,
	});
	ajv.addVocabulary(['example', 'discriminator', 'xml', 'externalDocs']);
	const schemas = (document.components && document.components.schemas) || {};
	ajv.addSchema({ $id: SCHEMAS_ID, $defs: rewriteSchemaRefs(schemas) });
	return {
		ajv,
		compile(schema) {
			return ajv.compile(rewriteSchemaRefs(schema));
		},
	};
}

// Formats the first Ajv error of VALIDATE as "at /pointer: message (schema path)".
function describeError(validate) {
	const error = (validate.errors || [])[0];
	if (!error)
		return 'no error reported';
	const params = error.params && Object.keys(error.params).length > 0
		? ` ${JSON.stringify(error.params)}` : '';
	return `at ${error.instancePath || '/'}: ${error.message}${params} (schema ${error.schemaPath})`;
}

module.exports = {
	DOCUMENT_PATH,
	loadDocument,
	resolvePointer,
	dereference,
	createValidator,
	describeError,
};
